package vm

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/machinetop/machinetop/guest/reclaim"
	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/layout"
)

// SetKeys are the keys Set takes, in the order help lists them.
var SetKeys = []string{"cpus", "memory", "disk", "kernel", "home-mount", "mounts", "file-events", "publish", "port-forwarding", "memory-reclaim"}

// Set changes configuration keys of cfg's machine, applied at the next
// boot: cpus=N, memory=SIZE, disk=SIZE (a larger root disk capacity: the
// sparse disk file grows at once and the guest grows its filesystem at
// its next boot; a disk never shrinks), kernel=PATH (a kernel .deb or vmlinuz; empty
// for the default kernel), home-mount=rw|ro|none, and mounts=LIST (comma
// separated `--mount` values replacing the machine's mounts; empty for
// none), file-events=on|off (whether host changes in shared directories
// reach inotify watchers in the machine), publish=LIST (comma separated
// `--publish` values replacing the machine's published ports; empty for
// none), port-forwarding=on|off; and memory-reclaim=off|gradual|aggressive,
// which ApplyReclaim hands to a running machine at once. It returns an error naming an unknown key or a bad value and
// changes nothing in that case; on success cfg holds the new values.
func (m *Manager) Set(cfg *Config, kv map[string]string) error {
	next := *cfg
	next.Mounts = append([]Mount(nil), cfg.Mounts...)
	next.Publish = append([]PortMapping(nil), cfg.Publish...)
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := setKey(&next, k, kv[k]); err != nil {
			return err
		}
	}
	if err := validateResources(next.CPUs, next.MemoryBytes, next.DiskBytes); err != nil {
		return err
	}
	if err := checkShares(&next); err != nil {
		return err
	}
	if err := checkPublish(&next); err != nil {
		return err
	}
	if err := m.checkPublishFree(&next); err != nil {
		return err
	}
	if next.Network == nil {
		// A first boot may have given the machine its address since cfg
		// was read (EnsureNetwork): keep it.
		if cur, err := m.Load(cfg.Name); err == nil {
			next.Network = cur.Network
		}
	}
	if next.DiskBytes < cfg.DiskBytes {
		return fmt.Errorf("disk=%s: the disk is %s; a disk can grow, not shrink", FormatSize(next.DiskBytes), FormatSize(cfg.DiskBytes))
	}
	if next.DiskBytes > cfg.DiskBytes {
		if err := growDisk(m.Dir(cfg.Name), next.DiskBytes); err != nil {
			return fmt.Errorf("disk=%s: %w", FormatSize(next.DiskBytes), err)
		}
	}
	if err := atomicfile.WriteJSON(m.Dir(cfg.Name).Config(), &next); err != nil {
		return err
	}
	*cfg = next
	return nil
}

// growDisk makes the machine's disk file size bytes long (sparse; a file
// already that long or longer is left alone). It is opened as every host
// process opens machine files (no links followed).
func growDisk(dir layout.Machine, size uint64) error {
	f, err := dir.Open(dir.Disk(), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() >= int64(size) {
		return nil
	}
	if err := f.Truncate(int64(size)); err != nil {
		return err
	}
	return f.Close()
}

// setKey applies one key=value of Set to c.
func setKey(c *Config, k, v string) error {
	switch k {
	case "cpus":
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("cpus=%s: not a whole number", v)
		}
		c.CPUs = n
	case "memory":
		b, err := ParseMemory(v)
		if err != nil {
			return fmt.Errorf("memory=%s: %v", v, err)
		}
		c.MemoryBytes = b / MiB * MiB
	case "disk":
		b, err := ParseSize(v)
		if err != nil {
			return fmt.Errorf("disk=%s: %v", v, err)
		}
		c.DiskBytes = b
	case "kernel":
		if v == "" {
			c.Kernel = ""
			return nil
		}
		abs, err := checkKernel(v)
		if err != nil {
			return fmt.Errorf("kernel=%s: %w", v, err)
		}
		c.Kernel = abs
	case "home-mount":
		if err := ValidateHomeMount(v); err != nil {
			return fmt.Errorf("home-mount=%s: use rw, ro or none", v)
		}
		c.HomeMount = v
	case "mounts":
		c.Mounts = nil
		for _, spec := range strings.Split(v, ",") {
			if spec == "" {
				continue
			}
			mt, err := ParseMount(spec, c.User.HomeDir)
			if err != nil {
				return err
			}
			c.Mounts = append(c.Mounts, mt)
		}
	case "file-events":
		if v != FileEventsOn && v != FileEventsOff {
			return fmt.Errorf("file-events=%s: use on or off", v)
		}
		c.FileEvents = v
	case "publish":
		c.Publish = nil
		for _, spec := range strings.Split(v, ",") {
			if spec == "" {
				continue
			}
			p, err := ParsePublish(spec)
			if err != nil {
				return fmt.Errorf("publish=%s: %w", v, err)
			}
			c.Publish = append(c.Publish, p)
		}
	case "port-forwarding":
		if err := ValidatePortForwarding(v); err != nil {
			return fmt.Errorf("port-forwarding=%s: use on or off", v)
		}
		c.PortForwarding = v
	case "memory-reclaim":
		mode, err := reclaim.ParseMode(v)
		if err != nil || v == "" {
			return fmt.Errorf("memory-reclaim=%s: use off, gradual or aggressive", v)
		}
		c.MemoryReclaim = string(mode)
	default:
		return fmt.Errorf("unknown setting %q: machine set takes cpus=N, memory=SIZE, disk=SIZE, kernel=PATH, home-mount=rw|ro|none, mounts=HOST[:GUEST][:ro],..., file-events=on|off, publish=[HOST_IP:]HOST_PORT:GUEST_PORT,..., port-forwarding=on|off, memory-reclaim=off|gradual|aggressive", k)
	}
	return nil
}
