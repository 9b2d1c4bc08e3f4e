// Package taskspec holds what the tasks service and the session workers
// both need to know of a task's operation (proto/fleetacs/tasks/v1).
package taskspec

import (
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// Passwords returns the operation's password fields, in a fixed order, so
// that they can be sealed apart from what holds the operation and put back
// (docs/tasks.md, "Credentials").
func Passwords(op *tasksv1.Operation) []*string {
	switch k := op.GetKind().(type) {
	case *tasksv1.Operation_Download:
		if k.Download != nil {
			return []*string{&k.Download.Password}
		}
	case *tasksv1.Operation_Upload:
		if k.Upload != nil {
			return []*string{&k.Upload.Password}
		}
	case *tasksv1.Operation_ScheduleDownload:
		if k.ScheduleDownload != nil {
			return []*string{&k.ScheduleDownload.Password}
		}
	case *tasksv1.Operation_ChangeDuState:
		var out []*string
		for _, o := range k.ChangeDuState.GetOperations() {
			switch d := o.GetKind().(type) {
			case *tasksv1.DeploymentUnitOperation_Install:
				if d.Install != nil {
					out = append(out, &d.Install.Password)
				}
			case *tasksv1.DeploymentUnitOperation_Update:
				if d.Update != nil {
					out = append(out, &d.Update.Password)
				}
			}
		}
		return out
	}
	return nil
}
