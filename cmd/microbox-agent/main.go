// Command microbox-agent is the init (PID 1) of every microbox guest. It is
// built static (CGO_ENABLED=0) and shipped as /init of a small initramfs of its
// own, so a new agent never means rebuilding the language images.
package main

import "microbox/sandbox/agent"

func main() { agent.Main() }
