package wanemu

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// SetProcessNice sets the nice value of every thread of this process; threads
// started later inherit it. The forwarder is a user-space router: when other
// work competes for the CPU, its timeliness is the link's, so a test binary
// that shares a busy machine may raise its priority (a negative value needs
// root). Linux keeps nice per thread, hence the walk over /proc/self/task.
func SetProcessNice(nice int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("wanemu: list threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread may have exited since the listing.
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && err != unix.ESRCH {
			return fmt.Errorf("wanemu: set nice of thread %d: %w", tid, err)
		}
	}
	return nil
}
