package cwmp

import "testing"

// BenchmarkSessionInform is the state-machine share of the commonest
// session: Inform in, InformResponse out, empty POST in, the ACS's turn
// finished, 204 out.
func BenchmarkSessionInform(b *testing.B) {
	inform := informEnv(NS1_2, "1", "2 PERIODIC")
	b.ReportAllocs()
	for b.Loop() {
		s := NewSession("bench")
		if out := s.Step(inform, nil); out.Reply == nil {
			b.Fatal("no InformResponse")
		}
		if out := s.Step(nil, nil); !out.Turn {
			b.Fatal("no turn at the empty POST")
		}
		if out, err := s.Finish(); err != nil || out.Reply != nil || !out.End {
			b.Fatal("session did not end")
		}
	}
}

// BenchmarkSessionCheckpoint measures one checkpoint and restore of a
// session with a request outstanding, which a worker does after every
// exchange.
func BenchmarkSessionCheckpoint(b *testing.B) {
	s := newTestSession("bench", queue(Request{Message: gpv("Device.DeviceInfo.", "Device.ManagementServer."), Key: "task-1"}))
	s.Step(informEnv(NS1_2, "1", "2 PERIODIC"), nil)
	s.Step(nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		data, err := s.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		var r Session
		if err := r.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
	}
}
