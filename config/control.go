package config

// The control socket's section (control:): where the running gateway
// answers the sekisho CLI (explain, report, status; docs/cli.md).

import (
	"strconv"
	"strings"
)

// ControlConfig is the control socket of the running gateway: a unix
// socket, mode 0660 with the gateway's group, through which `sekisho
// explain`, `report` and `status` ask the running gateway (DESIGN.md §2).
type ControlConfig struct {
	// Socket is the socket's path, relative to the working directory
	// unless absolute. In a file the default is FileControlSocket; without
	// a file (make run) var/control.sock, beside the embedded store.
	Socket string `yaml:"socket" type:"file"`
}

// FileControlSocket is control.socket in a file that does not name it:
// under the directory systemd's RuntimeDirectory=sekisho makes
// (deploy/sekisho.service).
const FileControlSocket = "/run/sekisho/control.sock"

// maxSocketPath is the longest path a unix socket can bind (sun_path, 108
// bytes with its terminating NUL).
const maxSocketPath = 107

// validate checks the control settings; errors name the key.
func (c *ControlConfig) validate() error {
	switch {
	case strings.TrimSpace(c.Socket) == "":
		return invalid("socket must name the control socket's path (default "+FileControlSocket+")", "control", "socket")
	case len(c.Socket) > maxSocketPath:
		return invalid("socket: a unix socket's path is at most 107 bytes, this one has "+strconv.Itoa(len(c.Socket)), "control", "socket")
	case strings.ContainsRune(c.Socket, 0):
		return invalid("socket: the path holds a NUL byte", "control", "socket")
	}
	return nil
}
