//go:build linux

package agent

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
)

// firstSampleInterval is how long the first metrics call measures CPU use.
const firstSampleInterval = 200 * time.Millisecond

// staleSample is the age past which the previous CPU sample is too old to
// measure from (it would average over minutes or hours), so a new one is
// taken over firstSampleInterval.
const staleSample = 10 * time.Second

// cpuSample is the aggregate "cpu" line of /proc/stat (proc(5)), in clock
// ticks, and when it was read.
type cpuSample struct {
	total, idle uint64
	ncpu        int
	at          time.Time
}

func readCPU() (*cpuSample, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := &cpuSample{at: time.Now()}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "cpu") {
			continue
		}
		if fields[0] != "cpu" {
			s.ncpu++
			continue
		}
		// user nice system idle iowait irq softirq steal; guest time
		// is already counted in user and nice.
		for i := 1; i < len(fields) && i <= 8; i++ {
			v, err := strconv.ParseUint(fields[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/stat: %w", err)
			}
			s.total += v
			if i == 4 || i == 5 {
				s.idle += v
			}
		}
	}
	if s.total == 0 {
		return nil, fmt.Errorf("/proc/stat: no cpu line")
	}
	return s, sc.Err()
}

// cpuPercent returns the CPU use since the previous call (the first call,
// and one more than staleSample after the previous, samples over
// firstSampleInterval), 0..100*ncpu.
func (s *Server) cpuPercent() (float64, int, error) {
	s.cpuMu.Lock()
	defer s.cpuMu.Unlock()
	prev := s.lastCPU
	if prev == nil || time.Since(prev.at) > staleSample {
		var err error
		if prev, err = readCPU(); err != nil {
			return 0, 0, err
		}
		time.Sleep(firstSampleInterval)
	}
	cur, err := readCPU()
	if err != nil {
		return 0, 0, err
	}
	s.lastCPU = cur
	dt := float64(cur.total - prev.total)
	if dt <= 0 {
		return 0, cur.ncpu, nil
	}
	busy := dt - float64(cur.idle-prev.idle)
	return busy / dt * 100 * float64(cur.ncpu), cur.ncpu, nil
}

// metrics samples memory (/proc/meminfo; the reclaim mode in force), CPU (/proc/stat), the root
// filesystem (statfs(2) of /), load (/proc/loadavg) and uptime
// (/proc/uptime); formats per proc(5).
func (s *Server) metrics() (*proto.Metrics, error) {
	m := &proto.Metrics{}
	mem, err := readMeminfo()
	if err != nil {
		return nil, err
	}
	m.MemTotal, m.MemAvailable, m.MemUsed, m.MemCache = mem.Total, mem.Available, mem.Used, mem.Cache
	m.ReclaimMode = s.reclaimMode()

	if m.CPUPercent, m.NumCPU, err = s.cpuPercent(); err != nil {
		return nil, err
	}

	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err == nil {
		m.DiskTotal = st.Blocks * uint64(st.Bsize)
		m.DiskUsed = (st.Blocks - st.Bfree) * uint64(st.Bsize)
	}

	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		for i := 0; i < 3 && i < len(f); i++ {
			m.Load[i], _ = strconv.ParseFloat(f[i], 64)
		}
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.UptimeSec, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	m.NetRxBytes, m.NetTxBytes = netTotals("/proc/net/dev")
	return m, nil
}

// netTotals sums the receive and transmit bytes of every interface but lo
// in path (format: proc(5) /proc/net/dev: two header lines, then
// "iface: rx_bytes packets ... tx_bytes ..." with tx_bytes the 9th
// number). A missing file gives zeros.
func netTotals(path string) (rx, tx uint64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, err1 := strconv.ParseUint(f[0], 10, 64)
		t, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 == nil && err2 == nil {
			rx += r
			tx += t
		}
	}
	return rx, tx
}

// readKV reads "Key:   value kB" lines into a map of the numbers.
func readKV(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, nil
}
