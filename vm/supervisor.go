package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/hashicorp/yamux"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/kit"
)

// Adopter is implemented by backends whose VMs run in a process of their
// own (QEMU) and so can outlive a supervisor killed with SIGKILL: a new
// supervisor adopts the running VM instead of booting another.
type Adopter interface {
	// Running reports whether a VM started for the machine named name with
	// run directory runDir is alive.
	Running(runDir, name string) bool
	// Adopt attaches to that VM.
	Adopt(ctx context.Context, spec *Spec) (Instance, error)
}

// DefaultStopTimeout is how long Stop waits for the guest to power off
// before it kills the VM: 10 s, as Apple's container machine.
const DefaultStopTimeout = 10 * time.Second

// supervisor owns one running machine.
type supervisor struct {
	m    *Manager
	cfg  *Config
	dir  string // machine directory
	run  string // run directory (sockets)
	inst Instance
	log  *slog.Logger
	// shares and configDisk are this boot's shared directories and
	// config disk (prepareHost).
	shares     []Share
	configDisk *Disk
	bootInfo   bootInfo

	mu      sync.Mutex
	st      status
	sess    *yamux.Session
	readyCh chan struct{} // closed while the agent is ready; replaced when it drops
	stopped chan struct{} // closed when the VM has exited
	stopWG  sync.WaitGroup
}

// Supervise runs the supervisor of machine name in the calling process
// until the VM exits: it boots the VM (or adopts one that outlived a
// killed supervisor), keeps a session with the guest agent (reconnecting
// when the channel drops), and serves the control socket. It returns nil
// at once when another supervisor already owns the machine. The hidden
// `machinetop __supervise NAME` command calls it in a process of its own.
func (m *Manager) Supervise(ctx context.Context, name string) error {
	cfg, err := m.Config(name)
	if err != nil {
		return err
	}
	dir := m.machineDir(name)
	lock := flock.New(filepath.Join(dir, superLockFile))
	ok, err := lock.TryLock()
	if err != nil {
		return fmt.Errorf("locking %s: %w", name, err)
	}
	if !ok {
		return nil
	}
	defer lock.Unlock()
	run, err := m.runDir(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(run, 0o700); err != nil {
		return err
	}
	s := &supervisor{
		m: m, cfg: cfg, dir: dir, run: run,
		log:     slog.New(slog.NewTextHandler(os.Stderr, nil)).With("machine", name),
		readyCh: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	s.st = status{State: StateStarting, PID: os.Getpid(), Backend: m.Backend.Name()}

	ln, err := listenPrivate(filepath.Join(run, controlSock))
	if err != nil {
		return err
	}
	defer ln.Close()
	go s.serve(ln)

	if err := s.boot(ctx); err != nil {
		s.log.Error("start failed", "err", err)
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		s.setStatus(func(st *status) { st.State = StateStopped; st.Error = err.Error() })
		// Let a waiting Manager read the error before the socket goes.
		time.Sleep(500 * time.Millisecond)
		return err
	}
	go s.agentLoop()
	werr := s.inst.Wait()
	s.log.Info("vm exited", "err", werr)
	s.setStatus(func(st *status) { st.State = StateStopped; st.AgentReady = false })
	close(s.stopped)
	s.stopWG.Wait()
	for _, f := range []string{controlSock} {
		os.Remove(filepath.Join(run, f))
	}
	return nil
}

// listenPrivate listens on a unix socket that only the current user can
// connect to (mode 0600, in a 0700 directory).
func listenPrivate(path string) (net.Listener, error) {
	os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

func (s *supervisor) setStatus(f func(*status)) {
	s.mu.Lock()
	f(&s.st)
	s.mu.Unlock()
}

func (s *supervisor) spec(k *kit.Kit) *Spec {
	disks := []Disk{{Path: filepath.Join(s.dir, diskFile), Serial: proto.RootSerial}}
	if !s.cfg.Populated {
		disks = append(disks, Disk{Path: filepath.Join(s.dir, imageTarFile), Serial: proto.ImageSerial, ReadOnly: true})
	}
	if s.configDisk != nil {
		disks = append(disks, *s.configDisk)
	}
	sp := &Spec{
		Name: s.cfg.Name, CPUs: s.cfg.CPUs, MemoryBytes: s.cfg.MemoryBytes,
		Cmdline:    fmt.Sprintf("quiet panic=-1 %s=%s %s=10.0.2.15/24,10.0.2.2,10.0.2.3", proto.ParamHostname, s.cfg.Name, proto.ParamNet),
		Disks:      disks,
		ConsoleLog: filepath.Join(s.dir, consoleLogFile),
		RunDir:     s.run,
		StateDir:   s.dir,
		Shares:     s.shares,
		SSHPort:    s.bootInfo.SSHPort,
	}
	if k != nil {
		sp.Kernel, sp.Initramfs = k.Kernel, k.Initramfs
	}
	return sp
}

func (s *supervisor) boot(ctx context.Context) error {
	if ad, ok := s.m.Backend.(Adopter); ok && ad.Running(s.run, s.cfg.Name) {
		inst, err := ad.Adopt(ctx, s.spec(nil))
		if err == nil {
			s.log.Info("adopted running vm", "pid", inst.PID())
			s.inst = inst
			started := time.Now()
			if b, err := os.ReadFile(filepath.Join(s.run, "started")); err == nil {
				started, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
			}
			bi := s.loadBootInfo()
			s.bootInfo = bi
			s.setStatus(func(st *status) {
				st.State = StateRunning
				st.VMPID = inst.PID()
				st.Started = started
				st.SSHPort, st.Mounts = bi.SSHPort, bi.Mounts
			})
			return nil
		}
		s.log.Warn("cannot adopt vm", "err", err)
	}
	k, err := s.m.Kit(ctx, s.cfg, os.Stderr)
	if err != nil {
		return err
	}
	accel, err := s.m.Backend.Accelerator(ctx, k.Kernel)
	if err != nil {
		return err
	}
	s.setStatus(func(st *status) { st.Accelerator, st.Kernel = accel, k.KernelRelease })
	if err := checkDisk(ctx, filepath.Join(s.dir, diskFile)); err != nil {
		return err
	}
	if !s.cfg.Populated {
		if _, err := os.Stat(filepath.Join(s.dir, imageTarFile)); err != nil {
			return fmt.Errorf("the image of %s was never unpacked and its copy is gone: delete and re-create the machine", s.cfg.Name)
		}
	}
	disk, bi, err := s.prepareHost()
	if err != nil {
		return err
	}
	s.configDisk, s.bootInfo = &disk, bi
	s.saveBootInfo(bi)
	spec := s.spec(k)
	inst, err := s.m.Backend.Start(ctx, spec)
	if err != nil {
		return err
	}
	s.inst = inst
	now := time.Now()
	writeFileAtomic(filepath.Join(s.run, "started"), []byte(now.Format(time.RFC3339Nano)), 0o600)
	s.log.Info("vm started", "pid", inst.PID(), "accel", accel, "kernel", k.KernelRelease)
	s.setStatus(func(st *status) {
		st.State = StateRunning
		st.VMPID = inst.PID()
		st.Started = now
		st.SSHPort, st.Mounts = bi.SSHPort, bi.Mounts
	})
	return nil
}

// Kit returns the guest kit (kernel and initramfs) for cfg, building it
// into DataDir/kit on first use. The kernel is the machine's own, else
// $MACHINETOP_KERNEL, else Debian's generic kernel when the machine shares
// directories over 9p, else the cloud kernel.
func (m *Manager) Kit(ctx context.Context, cfg *Config, log io.Writer) (*kit.Kit, error) {
	src, err := m.kitSource(cfg)
	if err != nil {
		return nil, err
	}
	gb, err := kit.GuestBinary(runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	return kit.Ensure(ctx, filepath.Join(m.DataDir, "kit"), src, gb, log)
}

// checkDisk runs e2fsck -p (preen: replay the journal, fix what is safe)
// on a stopped machine's disk; exit statuses 0–2 mean the filesystem is
// fine or was fixed (e2fsck(8)).
func checkDisk(ctx context.Context, path string) error {
	fsck, err := lookTool("e2fsck")
	if err != nil {
		return fmt.Errorf("e2fsck not found: install e2fsprogs")
	}
	out, err := exec.CommandContext(ctx, fsck, "-p", path).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() <= 2 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking the root disk failed (e2fsck -p %s): %v: %s", path, err, out)
	}
	return nil
}

// agentLoop keeps a session with the guest agent for as long as the VM
// runs, reconnecting whenever the channel drops.
func (s *supervisor) agentLoop() {
	for {
		select {
		case <-s.stopped:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := s.inst.DialAgent(ctx)
		cancel()
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		sess, err := client.NewSessionTimeout(conn, 5*time.Second)
		if err != nil {
			conn.Close()
			continue
		}
		cl := client.FromSession(sess)
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		info, err := cl.Ping(ctx)
		cancel()
		if err != nil {
			s.log.Warn("agent ping failed", "err", err)
			sess.Close()
			continue
		}
		s.log.Info("agent ready", "kernel", info.Kernel, "pid1", info.PID1, "populated", info.Populated)
		if info.Populated && !s.cfg.Populated {
			s.markPopulated()
		}
		s.recordGuest(info)
		ip := ""
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		if addrs, err := cl.Network(ctx); err == nil {
			for _, a := range addrs {
				if !a.IPv6 {
					ip, _, _ = strings.Cut(a.CIDR, "/")
					break
				}
			}
		}
		cancel()
		s.mu.Lock()
		s.sess = sess
		s.st.AgentReady = true
		s.st.IP = ip
		close(s.readyCh)
		s.mu.Unlock()

		clockDone := make(chan struct{})
		go s.syncClock(cl, clockDone)
		select {
		case <-sess.CloseChan():
			s.log.Info("agent channel closed; reconnecting")
		case <-s.stopped:
		}
		close(clockDone)
		s.mu.Lock()
		s.sess = nil
		s.st.AgentReady = false
		s.readyCh = make(chan struct{})
		s.mu.Unlock()
		sess.Close()
	}
}

// markPopulated records that the root disk holds the image, so later boots
// no longer attach the image tar, and drops the machine's link to it.
func (s *supervisor) markPopulated() {
	path := filepath.Join(s.dir, configFile)
	var cfg Config
	if err := readJSON(path, &cfg); err != nil {
		s.log.Error("reading config", "err", err)
		return
	}
	cfg.Populated = true
	if err := writeJSONAtomic(path, &cfg); err != nil {
		s.log.Error("writing config", "err", err)
		return
	}
	s.cfg.Populated = true
	os.Remove(filepath.Join(s.dir, imageTarFile))
}

func (s *supervisor) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

func (s *supervisor) respond(c net.Conn, r controlResponse) error {
	b, _ := json.Marshal(r)
	_, err := c.Write(append(b, '\n'))
	return err
}

func (s *supervisor) handle(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := readLineUnbuffered(c)
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	var req controlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		s.respond(c, controlResponse{Error: "bad request: " + err.Error()})
		return
	}
	switch req.Op {
	case "status":
		s.mu.Lock()
		st := s.st
		s.mu.Unlock()
		s.respond(c, controlResponse{Status: &st})
	case "agent":
		s.handleAgent(c, req)
	case "stop":
		s.handleStop(c, req)
	default:
		s.respond(c, controlResponse{Error: fmt.Sprintf("unknown op %q", req.Op)})
	}
}

func seconds(f float64, def time.Duration) time.Duration {
	if f <= 0 {
		return def
	}
	return time.Duration(f * float64(time.Second))
}

func (s *supervisor) handleAgent(c net.Conn, req controlRequest) {
	deadline := time.After(seconds(req.TimeoutSec, 5*time.Minute))
	var sess *yamux.Session
	for sess == nil {
		s.mu.Lock()
		ready, sc, st := s.readyCh, s.sess, s.st.State
		s.mu.Unlock()
		if sc != nil {
			sess = sc
			break
		}
		if st == StateStopped || st == StateStopping {
			s.respond(c, controlResponse{Error: fmt.Sprintf("machine %s is %s", s.cfg.Name, st)})
			return
		}
		select {
		case <-ready:
		case <-s.stopped:
		case <-deadline:
			s.respond(c, controlResponse{Error: fmt.Sprintf("the agent in %s did not become ready in time; see `machinetop machine logs %s`", s.cfg.Name, s.cfg.Name)})
			return
		}
	}
	stream, err := sess.OpenStream()
	if err != nil {
		s.respond(c, controlResponse{Error: "agent channel: " + err.Error()})
		return
	}
	defer stream.Close()
	if s.respond(c, controlResponse{}) != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(stream, c); done <- struct{}{} }()
	go func() { io.Copy(c, stream); done <- struct{}{} }()
	<-done
}

func (s *supervisor) handleStop(c net.Conn, req controlRequest) {
	s.stopWG.Add(1)
	defer s.stopWG.Done()
	timeout := seconds(req.TimeoutSec, DefaultStopTimeout)
	s.mu.Lock()
	sess := s.sess
	if s.st.State != StateStopped {
		s.st.State = StateStopping
	}
	s.mu.Unlock()
	asked := false
	if sess != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := client.FromSession(sess).Shutdown(ctx, false)
		cancel()
		asked = err == nil
		if err != nil {
			s.log.Warn("agent shutdown failed", "err", err)
		}
	}
	if !asked && s.inst != nil {
		if err := s.inst.RequestStop(context.Background()); err != nil {
			s.log.Warn("ACPI power-off request failed", "err", err)
		}
	}
	select {
	case <-s.stopped:
	case <-time.After(timeout):
		s.log.Warn("guest did not power off in time; killing the vm", "timeout", timeout)
		if s.inst != nil {
			s.inst.Kill()
		}
		<-s.stopped
	}
	s.respond(c, controlResponse{})
}
