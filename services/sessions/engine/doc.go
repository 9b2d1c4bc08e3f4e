// Package engine runs the CWMP sessions of a session worker
// (docs/design.md §2 steps 3-5) on plain Go values: the pkg/cwmp state
// machine of each session, the operations that decide what the ACS asks
// the CPE, the session's checkpoint, device lease and affinity record, and
// the one diff it records in inventory. It imports neither gRPC nor
// protobuf: package sessions is its gRPC edge. docs/sessions.md describes
// the design at length; this is the summary a reader of the code needs.
//
// # One exchange
//
// Find and lock the session (a request naming another device than the
// session's is refused); wait for a large-exchange slot if the message is
// large (gate.go); decode the body; unless the session was in memory,
// resume it from its checkpoint, else start it (an Inform with a device lease, if the memory
// budget has room) or answer as the protocol does outside a session. Step
// the state machine and act on its notices in order: an accepted Inform
// starts the session (the planners fill its operation queue), an answer
// goes to the operation that asked, a CPE request is offered to the
// operations. If the step hands the ACS the turn, the first operation in
// queue order that has something to ask provides the next request; with
// none, the turn is finished. Then either end the session (record the diff,
// settle the operations, delete the checkpoint and the record, release the
// lease, answer) or save the checkpoint with the record and answer. The
// checkpoint is saved before the answer leaves, so a worker that dies
// after answering leaves nothing the next one lacks.
//
// # Operations
//
// An Operation is one piece of work done with a CPE through one or more
// requests: a discovery of the parameter tree today, a task (every ACS
// method, results typed), the convergence of a preset or a diagnostic
// next. It is the only way a request reaches the CPE, and it sees the
// answer to each of its requests (Answer) before it is asked for the next
// (Next), because pkg/cwmp hands the turn to the engine only after
// reporting the answer. Next does not change the operation: the engine may
// ask and not send (a refusal by the session, which comes back as an
// Answer with NotSent). An operation also sees what the CPE sends of its
// own accord (Observe: a TransferComplete completing a Download) and adds
// what it learned to the session's diff (Contribute), according to how the
// session ended (Outcome).
//
// A session's operations form a queue ordered by priority, then creation,
// bounded by Config.MaxOperations; the rest wait for a later session.
// Operations are data: checkpointed as JSON under their kind with the
// session after every exchange, restored by the Planner of that kind on
// whichever worker resumes the session, they do no I/O. Their Planner does:
// it makes them when a session starts (Plan, which may read inventory or a
// task queue) and learns how they ended (Settle, which stores results and
// what outlives the session). An operation that spans sessions (a Reboot
// awaiting "M Reboot" and "1 BOOT", a Download awaiting its
// TransferComplete, a diagnostic awaiting "8 DIAGNOSTICS COMPLETE") lives
// between sessions in its planner's store, not in the engine: the planner
// makes it again in the session that brings its completion.
//
// # What is checkpointed
//
// The snapshot (format 2) holds the device lease, the Inform's facts and
// kept parameters, the operation queue with each operation's state, the
// fenced flag, what the session holds against its limits, the pkg/cwmp
// state (phase, version, outstanding request with its routing key) and the
// affinity record. Format 1 checkpoints (before operations) are migrated;
// other formats and unknown operation kinds are refused, and the session
// is answered as outside any session.
//
// # What a session writes
//
// A session that ended by the protocol (the ACS's 204: the CPE counts it
// as a success) records the Inform's facts and parameters and what its
// operations contribute. A session that expired idle, was abandoned or
// replaced by the CPE, or failed, records only the Inform's facts (time,
// events, address) and what operations confirm the CPE changed: the CPE
// counts the session as failed and sends its Inform again. A superseded
// session (a newer session holds the lease) writes nothing.
//
// # Limits
//
// See budget.go: the Inform's parameters, a session's parameters and
// bytes, and a worker-wide budget that sheds new sessions with 503.
//
// Lock order: a session's mu, then the table's (see table).
package engine
