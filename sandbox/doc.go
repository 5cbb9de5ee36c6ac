// Package sandbox is the host side of a job: it boots a fresh microVM for the
// job's language, hands the job to the guest agent, enforces the wall-time
// limit by killing the VM, and turns what the agent measured into a verdict
// with Judge0's status ids.
package sandbox
