package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

func init() {
	Register("root", func() error {
		if os.Geteuid() != 0 {
			return errors.New("test needs root")
		}
		return nil
	})
	Register("node", lookTool("node"))
	Register("python", lookTool("python3"))
	Register("userns", func() error {
		b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) == "0" {
			return errors.New("user.max_user_namespaces is 0")
		}
		return nil
	})
	Register("cgroup-v1", func() error {
		for _, c := range []string{"memory", "pids", "cpu", "cpuacct"} {
			if _, err := os.Stat("/sys/fs/cgroup/" + c + "/tasks"); err != nil {
				return fmt.Errorf("no cgroup v1 %s hierarchy: %w", c, err)
			}
		}
		return nil
	})
	Register("bwrap", lookTool("bwrap"))
	Register("git", lookTool("git"))
}

func lookTool(name string) Probe {
	return func() error {
		_, err := exec.LookPath(name)
		return err
	}
}
