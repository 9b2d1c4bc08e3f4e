package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// A checkpoint of format 3 is a head and a journal (docs/sessions.md,
// "Checkpoints"). The head is the snapshot's JSON without what grows
// during a session: the Inform's parameters and what journaled operations
// learn (a discovery's tree). Those go to the journal, which the store
// keeps append-only (affinity.Checkpoint.Journal): each save appends what
// the exchange added, so a discovery of n parameters costs O(n) to save
// over the whole session, not O(n) at every exchange.
//
// The journal is lines of text, each ending in '\n':
//
//	i <record>       the Inform's parameters
//	o <id> <record>  a record of the queue's operation <id>
//
// where a record is one JSON value (no raw newline). Lines are replayed in
// order on restore.

// Journaled is an Operation whose state grows large during a session (a
// discovery's tree). Its checkpointed JSON (json.Marshal of it) is then
// only its head; what it learns goes to the journal as records, appended
// at every save, replayed on restore after its planner restored the head.
type Journaled interface {
	Operation
	// AppendJournal appends to b a record (one JSON value, without raw
	// newlines) of what the operation learned since its last record, and
	// returns it; b as it was when there is nothing new. With full set
	// the record holds everything, and replaces whatever records came
	// before it when replayed.
	AppendJournal(b []byte, full bool) []byte
	// ReplayJournal applies one record, in order, on restore.
	ReplayJournal(rec []byte) error
}

// appendJournal appends the session's journal lines to b: everything when
// full, else what the exchange added.
func (s *session) appendJournal(b []byte, full bool) []byte {
	if (full || !s.informJournaled) && s.inform != nil && len(s.inform.Params) > 0 {
		b = append(b, "i "...)
		b = appendInformRecord(b, s.inform.Params)
		b = append(b, '\n')
	}
	if s.queue == nil {
		return b
	}
	for _, en := range s.queue.Entries {
		j, ok := en.Op.(Journaled)
		if !ok {
			continue
		}
		n := len(b)
		b = append(b, "o "...)
		b = append(b, en.ID...)
		b = append(b, ' ')
		m := len(b)
		b = j.AppendJournal(b, full)
		if len(b) == m {
			b = b[:n] // nothing new
			continue
		}
		b = append(b, '\n')
	}
	return b
}

// appendInformRecord appends {"p":[name,value,type,...]}.
func appendInformRecord(b []byte, params []cwmp.ParameterValue) []byte {
	b = append(b, `{"p":[`...)
	for i := range params {
		if i > 0 {
			b = append(b, ',')
		}
		p := &params[i]
		b = cwmp.AppendJSONString(b, p.Name)
		b = append(b, ',')
		b = cwmp.AppendJSONString(b, p.Value)
		b = append(b, ',')
		b = cwmp.AppendJSONString(b, p.Type)
	}
	return append(b, "]}"...)
}

var errBadJournal = errors.New("bad checkpoint journal")

// replayJournal applies a journal to a session restored from its head.
func (s *session) replayJournal(journal []byte) error {
	for line := 1; len(journal) > 0; line++ {
		i := bytes.IndexByte(journal, '\n')
		if i < 0 {
			return fmt.Errorf("journal line %d: no end: %w", line, errBadJournal)
		}
		l := journal[:i]
		journal = journal[i+1:]
		kind, rest, _ := bytes.Cut(l, []byte{' '})
		switch string(kind) {
		case "i":
			if s.inform == nil {
				return fmt.Errorf("journal line %d: Inform parameters without an Inform: %w", line, errBadJournal)
			}
			var rec struct {
				P []string `json:"p"`
			}
			if err := json.Unmarshal(rest, &rec); err != nil || len(rec.P)%3 != 0 {
				return fmt.Errorf("journal line %d: Inform parameters: %w", line, errors.Join(err, errBadJournal))
			}
			params := make([]cwmp.ParameterValue, len(rec.P)/3)
			for k := range params {
				params[k] = cwmp.ParameterValue{Name: rec.P[3*k], Value: rec.P[3*k+1], Type: rec.P[3*k+2]}
			}
			s.inform.Params = params
		case "o":
			id, rec, _ := bytes.Cut(rest, []byte{' '})
			en := (*entry)(nil)
			if s.queue != nil {
				en, _ = s.queue.find(string(id) + " ")
			}
			if en == nil {
				return fmt.Errorf("journal line %d: no operation %q: %w", line, id, errBadJournal)
			}
			j, ok := en.Op.(Journaled)
			if !ok {
				return fmt.Errorf("journal line %d: operation %q keeps no journal: %w", line, id, errBadJournal)
			}
			if err := j.ReplayJournal(rec); err != nil {
				return fmt.Errorf("journal line %d: operation %q: %w", line, id, errors.Join(err, errBadJournal))
			}
		default:
			return fmt.Errorf("journal line %d: unknown kind %q: %w", line, kind, errBadJournal)
		}
	}
	return nil
}

func appendInt(b []byte, n int) []byte { return strconv.AppendInt(b, int64(n), 10) }
