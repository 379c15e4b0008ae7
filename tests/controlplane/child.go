package main

import (
	"bytes"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// child is one component running as a re-exec of this binary.
type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // exit status, valid once done is closed
}

func startChild(name, logPath string, args []string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor once started
	fmt.Fprintf(logFile, "\n==== %s starting at %s\n", name, time.Now().Format(time.RFC3339))

	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// If the supervisor dies without cleaning up (SIGKILL, crash), the
		// kernel kills the child too: no orphaned apiservers between tests.
		Pdeathsig: syscall.SIGKILL,
		// Own process group: a Ctrl-C on the terminal reaches only the
		// supervisor, which then stops the components in order.
		Setpgid: true,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	log.Printf("%s started (pid %d)", name, cmd.Process.Pid)
	c := &child{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// stop asks the process to shut down gracefully and kills it if it has not
// exited within grace (or as soon as force is closed).
func (c *child) stop(grace time.Duration, force <-chan struct{}) {
	select {
	case <-c.done:
		return
	default:
	}
	start := time.Now()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.done:
		log.Printf("%s stopped after %.1fs", c.name, time.Since(start).Seconds())
		return
	case <-timer.C:
		log.Printf("%s did not stop within %v, killing it", c.name, grace)
	case <-force:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
	log.Printf("%s killed", c.name)
}

// unexpectedExit reports a component that exited on its own.
func (c *child) unexpectedExit() error {
	c.dumpLogTail()
	return fmt.Errorf("%s exited unexpectedly (%v); log: %s", c.name, c.err, c.logPath)
}

// dumpLogTail copies the end of the component's log to stderr, so that a CI
// failure shows why without anyone having to fetch the log file.
func (c *child) dumpLogTail() {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	const n = 40
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("  | ")
		b.Write(l)
		b.WriteByte('\n')
	}
	log.Printf("last lines of %s:\n%s", c.logPath, b.String())
}
