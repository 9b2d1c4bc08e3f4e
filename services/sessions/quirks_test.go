package sessions

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// What a task does when the CPE answers its request in ways CWMP allows or
// real CPEs are known to (docs/protocol.md §2, §3, §4.3, §5.3, §13): the
// CPE's answers are written here as raw envelopes, the way they arrive on
// the wire, and go through the worker's engine with the task planner
// (tasks_test.go's environment).

// soapEnv wraps header and body elements in an envelope with the usual
// prefixes (soap-env, cwmp on cwmp-1-2, xsd, xsi).
func soapEnv(header, body string) []byte {
	return []byte(`<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/"` +
		` xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp="urn:dslforum-org:cwmp-1-2">` +
		`<soap-env:Header>` + header + `</soap-env:Header><soap-env:Body>` + body + `</soap-env:Body></soap-env:Envelope>`)
}

// idHeader is the cwmp:ID header as most CPEs write it.
func idHeader(id string) string {
	return `<cwmp:ID soap-env:mustUnderstand="1">` + id + `</cwmp:ID>`
}

// runRaw runs a session of one task t1 whose every request the CPE
// answers with raw(request, its cwmp:ID), or as answers does when raw
// returns nil. It returns the environment, the CPE (c.sent lists what
// the ACS sent) and the task's report.
func runRaw(t *testing.T, op *tasksv1.Operation, raw func(m cwmp.Message, id string) []byte) (*taskEnv, *taskCPE, *tasksv1.TaskReport) {
	t.Helper()
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, op)
	c := v.cpe(answers)
	c.inform(v.e, periodic)
	var body []byte
	for range 10 {
		m, id, r := c.stepReply(v.e, body)
		if m == nil {
			// The session must end as the ACS ends it (docs/protocol.md
			// §4.3 rule 5), not with an HTTP error.
			if r.Status != 204 || len(r.Body) != 0 || !r.SessionEnded {
				t.Fatalf("the session ended with %d %q (ended %v), want an empty 204", r.Status, r.Body, r.SessionEnded)
			}
			return v, c, v.tasks.report(t, "t1")
		}
		if body = raw(m, id); body == nil {
			body = c.encode(answers(m), id)
		}
	}
	t.Fatal("session did not end")
	return nil, nil, nil
}

func gpvResponse(values string) string {
	return `<cwmp:GetParameterValuesResponse><ParameterList soap-enc:arrayType="cwmp:ParameterValueStruct[0]">` + values +
		`</ParameterList></cwmp:GetParameterValuesResponse>`
}

func pvs(name, value, typ string) string {
	if typ != "" {
		typ = ` xsi:type="` + typ + `"`
	}
	return `<ParameterValueStruct><Name>` + name + `</Name><Value` + typ + `>` + value + `</Value></ParameterValueStruct>`
}

// resultValues maps a GetParameterValues result's names to value and type.
func resultValues(r *tasksv1.TaskReport) map[string][2]string {
	out := map[string][2]string{}
	for _, p := range r.GetResult().GetGetParameterValues().GetValues() {
		out[p.GetName()] = [2]string{p.GetValue(), p.GetType()}
	}
	return out
}

// Case 1: a GetParameterValues of a partial path is answered with the
// subtree; one of two names is left out of the answer. The task keeps
// what the CPE answered, and inventory gets that and nothing else.
func TestQuirkGPVMoreOrFewer(t *testing.T) {
	t.Run("partial path answered with its subtree", func(t *testing.T) {
		v, _, r := runRaw(t, gpv("Device.X."), func(_ cwmp.Message, id string) []byte {
			return soapEnv(idHeader(id), gpvResponse(pvs("Device.X.A", "1", "xsd:unsignedInt")+pvs("Device.X.Y.B", "b", "xsd:string")))
		})
		if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
			t.Fatalf("report %v", r)
		}
		got := resultValues(r)
		if len(got) != 2 || got["Device.X.A"] != [2]string{"1", "xsd:unsignedInt"} || got["Device.X.Y.B"] != [2]string{"b", "xsd:string"} {
			t.Fatalf("values %v", got)
		}
		d := v.inv.last(t)
		if p := param(d, "Device.X.Y.B"); p == nil || p.Value != "b" || !p.HasValue {
			t.Fatalf("diff has %+v", p)
		}
	})
	t.Run("a name left out", func(t *testing.T) {
		v, _, r := runRaw(t, gpv("Device.X.A", "Device.X.B"), func(_ cwmp.Message, id string) []byte {
			return soapEnv(idHeader(id), gpvResponse(pvs("Device.X.A", "a", "xsd:string")))
		})
		if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
			t.Fatalf("report %v", r)
		}
		if got := resultValues(r); len(got) != 1 || got["Device.X.A"][0] != "a" {
			t.Fatalf("values %v", got)
		}
		d := v.inv.last(t)
		if param(d, "Device.X.B") != nil || slices.Contains(d.RemovedPaths, "Device.X.B") {
			t.Fatalf("the name the CPE left out reached the diff: %+v, removed %v", d.Parameters, d.RemovedPaths)
		}
		if p := param(d, "Device.X.A"); p == nil || p.Value != "a" {
			t.Fatalf("diff has %+v", p)
		}
	})
}

// Case 2: a SetParameterValues refused with 9003 and one
// SetParameterValuesFault per parameter, as a CPE writes it (SOAP-ENV
// prefix, faultcode without prefix): the task's fault keeps the code, the
// string and every parameter's fault; nothing reaches inventory.
func TestQuirkSPVFaultPerParameter(t *testing.T) {
	op := &tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValues{
		Values: []*tasksv1.ParameterValue{{Name: "Device.X.A", Value: "x", Type: "xsd:string"}, {Name: "Device.X.B", Value: "70000", Type: "xsd:unsignedInt"}}}}}
	v, _, r := runRaw(t, op, func(_ cwmp.Message, id string) []byte {
		return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2">
 <SOAP-ENV:Header><cwmp:ID SOAP-ENV:mustUnderstand="1">` + id + `</cwmp:ID></SOAP-ENV:Header>
 <SOAP-ENV:Body>
  <SOAP-ENV:Fault>
   <faultcode>Client</faultcode>
   <faultstring>CWMP fault</faultstring>
   <detail>
    <cwmp:Fault>
     <FaultCode>9003</FaultCode>
     <FaultString>Invalid arguments</FaultString>
     <SetParameterValuesFault><ParameterName>Device.X.A</ParameterName><FaultCode>9008</FaultCode><FaultString>Attempt to set a non-writable parameter</FaultString></SetParameterValuesFault>
     <SetParameterValuesFault><ParameterName>Device.X.B</ParameterName><FaultCode>9007</FaultCode></SetParameterValuesFault>
    </cwmp:Fault>
   </detail>
  </SOAP-ENV:Fault>
 </SOAP-ENV:Body>
</SOAP-ENV:Envelope>`)
	})
	f := r.GetFault()
	if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_FAULT || f.GetCode() != 9003 || f.GetFaultString() != "Invalid arguments" ||
		f.GetSource() != tasksv1.FaultSource_FAULT_SOURCE_CPE {
		t.Fatalf("report %v", r)
	}
	pf := f.GetParameterFaults()
	if len(pf) != 2 || pf[0].GetName() != "Device.X.A" || pf[0].GetCode() != 9008 || pf[0].GetFaultString() != "Attempt to set a non-writable parameter" ||
		pf[1].GetName() != "Device.X.B" || pf[1].GetCode() != 9007 || pf[1].GetFaultString() != "" {
		t.Fatalf("parameter faults %v", pf)
	}
	d := v.inv.last(t)
	if param(d, "Device.X.A") != nil || param(d, "Device.X.B") != nil {
		t.Fatalf("a refused value reached the diff: %+v", d.Parameters)
	}
}

// Case 3: SetParameterValuesResponse with Status 1 (applied, committed
// later): done, the result's status is 1, and the value is in inventory.
// Case 8: AddObjectResponse and DeleteObjectResponse with Status 1.
func TestQuirkStatusOne(t *testing.T) {
	t.Run("SetParameterValues", func(t *testing.T) {
		v, _, r := runRaw(t, spv("", "Device.X.A", "5", "xsd:unsignedInt"), func(_ cwmp.Message, id string) []byte {
			return soapEnv(idHeader(id), `<cwmp:SetParameterValuesResponse><Status>1</Status></cwmp:SetParameterValuesResponse>`)
		})
		if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE || r.GetResult().GetSetParameterValues().GetStatus() != 1 {
			t.Fatalf("report %v", r)
		}
		if p := param(v.inv.last(t), "Device.X.A"); p == nil || p.Value != "5" || p.Type != "xsd:unsignedInt" {
			t.Fatalf("diff has %+v", p)
		}
	})
	t.Run("AddObject", func(t *testing.T) {
		op := &tasksv1.Operation{Kind: &tasksv1.Operation_AddObject{AddObject: &tasksv1.AddObject{ObjectName: "Device.NAT.PortMapping."}}}
		v, _, r := runRaw(t, op, func(_ cwmp.Message, id string) []byte {
			return soapEnv(idHeader(id), `<cwmp:AddObjectResponse><InstanceNumber> 12 </InstanceNumber><Status>1</Status></cwmp:AddObjectResponse>`)
		})
		res := r.GetResult().GetAddObject()
		if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE || res.GetInstanceNumber() != 12 || res.GetStatus() != 1 ||
			res.GetObjectPath() != "Device.NAT.PortMapping.12." {
			t.Fatalf("report %v", r)
		}
		if param(v.inv.last(t), "Device.NAT.PortMapping.12.") == nil {
			t.Fatalf("the new instance is not in the diff: %+v", v.inv.last(t).Parameters)
		}
	})
	t.Run("DeleteObject", func(t *testing.T) {
		op := &tasksv1.Operation{Kind: &tasksv1.Operation_DeleteObject{DeleteObject: &tasksv1.DeleteObject{ObjectName: "Device.NAT.PortMapping.3."}}}
		v, _, r := runRaw(t, op, func(_ cwmp.Message, id string) []byte {
			return soapEnv(idHeader(id), `<cwmp:DeleteObjectResponse><Status>1</Status></cwmp:DeleteObjectResponse>`)
		})
		if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE || r.GetResult().GetDeleteObject().GetStatus() != 1 {
			t.Fatalf("report %v", r)
		}
		if !slices.Contains(v.inv.last(t).RemovedPaths, "Device.NAT.PortMapping.3.") {
			t.Fatalf("removed %v", v.inv.last(t).RemovedPaths)
		}
	})
}

// Case 4: a CPE that answers the ACS's request with fault 8005 (retry
// request) has not carried it out and asks for it again: the session sends
// it again at once (cwmp.Session, docs/protocol.md §7.1), twice at most.
// A CPE that then answers has the task done, and saw only the request; one
// that keeps answering 8005 has the task reported RETRY, which the tasks
// service bounds by the task's max_attempts (docs/tasks.md, "Retries"), not
// FAULT; nothing reaches inventory and the session ends normally. Each
// resend is counted (fleetacs.sessions.answer_quirks).
func TestQuirkCPERetryRequest(t *testing.T) {
	retry := func(id string) []byte {
		return soapEnv(idHeader(id), `<soap-env:Fault><faultcode>Server</faultcode><faultstring>CWMP fault</faultstring><detail>`+
			`<cwmp:Fault><FaultCode>8005</FaultCode><FaultString>Retry request</FaultString></cwmp:Fault></detail></soap-env:Fault>`)
	}
	ops := []*tasksv1.Operation{gpv("Device.X.A"), spv("", "Device.X.A", "1", "xsd:unsignedInt"),
		{Kind: &tasksv1.Operation_Refresh{Refresh: &tasksv1.Refresh{Path: "Device.X."}}}}
	for _, op := range ops {
		t.Run(kindOf(op)+", always", func(t *testing.T) {
			v, c, r := runRaw(t, op, func(_ cwmp.Message, id string) []byte { return retry(id) })
			if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_RETRY || !strings.Contains(r.GetDetail(), "8005") {
				t.Fatalf("report %v", r)
			}
			// Sent, then sent again twice (cwmp maxRetransmits).
			if got := c.methods(); len(got) != 3 || got[0] != got[1] || got[1] != got[2] {
				t.Fatalf("sent %v", got)
			}
			if param(v.inv.last(t), "Device.X.A") != nil {
				t.Fatal("a request the CPE did not carry out reached the diff")
			}
			if q := v.quirks(t); len(q) != 1 || q["retry_request "+c.methods()[0]] != 2 {
				t.Fatalf("quirks %v", q)
			}
		})
		t.Run(kindOf(op)+", once", func(t *testing.T) {
			n := 0
			v, c, r := runRaw(t, op, func(_ cwmp.Message, id string) []byte {
				if n++; n == 1 {
					return retry(id)
				}
				return nil // answered
			})
			if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
				t.Fatalf("report %v", r)
			}
			if got := c.methods(); len(got) < 2 || got[0] != got[1] {
				t.Fatalf("sent %v, want the first request twice", got)
			}
			if q := v.quirks(t); len(q) != 1 || q["retry_request "+c.methods()[0]] != 1 {
				t.Fatalf("quirks %v", q)
			}
		})
	}
}

// Case 5: a CPE that answers with another method's response, or with a
// cwmp:ID that is not the request's: the answer is not taken for the
// request's (cwmp.Session): the request is sent again with the same
// cwmp:ID, and a CPE that then answers it finishes the task; one that
// keeps answering something else has the request abandoned, the session
// ended with a 204 and the task reported RETRY; nothing of the stray
// answers reaches inventory.
func TestQuirkStrayAnswer(t *testing.T) {
	wrongMethod := func(_ cwmp.Message, id string) []byte {
		return soapEnv(idHeader(id), gpvResponse(pvs("Device.X.A", "stray", "xsd:string")))
	}
	// Another of the session's own IDs (its number 0, never sent): a late
	// answer to an earlier request, never taken for this one's (an ID the
	// session never gave is: TestQuirkForeignID).
	wrongID := func(m cwmp.Message, id string) []byte {
		earlier := id[:strings.LastIndexByte(id, '.')+1] + "0"
		if _, ok := m.(*cwmp.GetParameterValues); ok {
			return soapEnv(idHeader(earlier), gpvResponse(pvs("Device.X.A", "stray", "xsd:string")))
		}
		return soapEnv(idHeader(earlier), `<cwmp:SetParameterValuesResponse><Status>0</Status></cwmp:SetParameterValuesResponse>`)
	}
	for _, tt := range []struct {
		name string
		op   *tasksv1.Operation
		raw  func(cwmp.Message, string) []byte
	}{
		{"GetParameterValuesResponse to a SetParameterValues", spv("", "Device.X.A", "set", "xsd:string"), wrongMethod},
		{"another cwmp:ID", gpv("Device.X.A"), wrongID},
		{"another cwmp:ID to a SetParameterValues", spv("", "Device.X.A", "set", "xsd:string"), wrongID},
	} {
		t.Run(tt.name+", then the answer", func(t *testing.T) {
			v := newTaskEnv(t, nil)
			v.queue.ids = []string{"t1"}
			v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, tt.op)
			c := v.cpe(answers)
			c.inform(v.e, periodic)
			m, id := c.step(v.e, nil)
			again, id2 := c.step(v.e, tt.raw(m, id))
			if again == nil || again.Method() != m.Method() || id2 != id {
				t.Fatalf("after a stray answer the ACS sent %v with ID %q, want %s again with %q", again, id2, m.Method(), id)
			}
			if m, _ := c.step(v.e, c.encode(answers(again), id2)); m != nil {
				t.Fatalf("sent %s", m.Method())
			}
			r := v.tasks.report(t, "t1")
			if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
				t.Fatalf("report %v", r)
			}
			if p := param(v.inv.last(t), "Device.X.A"); p == nil || p.Value == "stray" {
				t.Fatalf("diff has %+v", p)
			}
		})
		t.Run(tt.name+", always", func(t *testing.T) {
			v, c, r := runRaw(t, tt.op, tt.raw)
			// Sent, then sent again twice (cwmp maxRetransmits), then
			// abandoned: the session ended with the 204 runRaw saw.
			if got := c.methods(); len(got) != 3 || got[0] != got[2] {
				t.Fatalf("sent %v", got)
			}
			if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_RETRY {
				t.Fatalf("report %v", r)
			}
			v.inv.mu.Lock()
			defer v.inv.mu.Unlock()
			for _, d := range v.inv.diffs {
				if p := param(d, "Device.X.A"); p != nil {
					t.Fatalf("diff has %+v", p)
				}
			}
		})
	}
}

// A CPE that numbers its answers itself (a cwmp:ID the session never
// gave, docs/protocol.md §3): the answer of the right method is taken for
// the task's, as one without an ID is; of another method it stays a
// stray answer.
func TestQuirkForeignID(t *testing.T) {
	for _, tt := range []struct {
		name string
		op   *tasksv1.Operation
		body string
	}{
		{"GetParameterValues", gpv("Device.X.A"), gpvResponse(pvs("Device.X.A", "from-cpe", "xsd:string"))},
		{"SetParameterValues", spv("", "Device.X.A", "set", "xsd:string"), `<cwmp:SetParameterValuesResponse><Status>0</Status></cwmp:SetParameterValuesResponse>`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, c, r := runRaw(t, tt.op, func(cwmp.Message, string) []byte { return soapEnv(idHeader("7"), tt.body) })
			if got := c.methods(); len(got) != 1 {
				t.Fatalf("sent %v, want the request once", got)
			}
			if q := v.quirks(t); len(q) != 1 || q["foreign_id "+tt.name] != 1 {
				t.Fatalf("quirks %v", q)
			}
			if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
				t.Fatalf("report %v", r)
			}
			want := "set"
			if tt.name == "GetParameterValues" {
				want = "from-cpe"
				if vs := r.GetResult().GetGetParameterValues().GetValues(); len(vs) != 1 || vs[0].GetValue() != want {
					t.Fatalf("result %v", r.GetResult())
				}
			}
			if p := param(v.inv.last(t), "Device.X.A"); p == nil || p.Value != want {
				t.Fatalf("diff has %+v, want %q", p, want)
			}
		})
	}
}

// Case 6: after the InformResponse the CPE sends requests of its own
// (a TransferComplete no task waits for, GetRPCMethods, a vendor request)
// before its empty POST; each is answered (the vendor one with fault
// 8000), and the queued task still runs after the empty POST.
func TestQuirkCPERequestsBeforeTask(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.X.A"))
	c := v.cpe(answers)
	c.inform(v.e, []cwmp.Event{{Code: "7 TRANSFER COMPLETE"}, {Code: "M Download", CommandKey: "nobody"}})
	for _, tt := range []struct{ body, want string }{
		{`<cwmp:TransferComplete><CommandKey>nobody</CommandKey><FaultStruct><FaultCode>0</FaultCode><FaultString></FaultString></FaultStruct>` +
			`<StartTime>2026-03-01T11:00:00Z</StartTime><CompleteTime>2026-03-01T11:01:00Z</CompleteTime></cwmp:TransferComplete>`, "TransferCompleteResponse"},
		{`<cwmp:GetRPCMethods/>`, "GetRPCMethodsResponse"},
		{`<cwmp:X_ACME_Hello><Greeting>hi</Greeting></cwmp:X_ACME_Hello>`, "Fault8000"},
	} {
		r := c.post(v.e, soapEnv(idHeader("cpe-7"), tt.body))
		if r.Status != 200 {
			t.Fatalf("%s answered %d", tt.want, r.Status)
		}
		env, err := cwmp.Decode(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		got := env.Body.Method()
		if f, ok := env.Body.(*cwmp.Fault); ok {
			got = "Fault" + strconv.Itoa(int(f.Code))
		}
		if got != tt.want || env.Header.ID != "cpe-7" {
			t.Fatalf("answered %s with ID %q, want %s", got, env.Header.ID, tt.want)
		}
	}
	c.run(v.e)
	if got := c.methods(); !slices.Equal(got, []string{"GetParameterValues"}) {
		t.Fatalf("sent %v", got)
	}
	if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("report %v", r)
	}
}

// Case 7: the header and namespace variants of real CPEs' responses: no
// Header, no cwmp:ID, an empty one, mustUnderstand 0 or absent, other
// prefixes (SOAP-ENV, ns1), a default namespace, and the cwmp-1-0
// namespace in a session whose Inform used cwmp-1-2. Each answer is the
// request's (docs/protocol.md §3, §13 input 1 and 2).
func TestQuirkResponseHeaderAndNamespaces(t *testing.T) {
	const resp = `<ParameterList><ParameterValueStruct><Name>Device.X.A</Name><Value xsi:type="xsd:string">quirk</Value></ParameterValueStruct></ParameterList>`
	const xsi = ` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"`
	for _, tt := range []struct {
		name string
		body func(id string) string
	}{
		{"no Header", func(string) string {
			return `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"` + xsi +
				`><soap:Body><cwmp:GetParameterValuesResponse>` + resp + `</cwmp:GetParameterValuesResponse></soap:Body></soap:Envelope>`
		}},
		{"empty Header", func(string) string {
			return string(soapEnv(``, `<cwmp:GetParameterValuesResponse>`+resp+`</cwmp:GetParameterValuesResponse>`))
		}},
		{"empty cwmp:ID", func(string) string {
			return string(soapEnv(`<cwmp:ID soap-env:mustUnderstand="1"/>`, `<cwmp:GetParameterValuesResponse>`+resp+`</cwmp:GetParameterValuesResponse>`))
		}},
		{"mustUnderstand 0", func(id string) string {
			return string(soapEnv(`<cwmp:ID soap-env:mustUnderstand="0">`+id+`</cwmp:ID>`, `<cwmp:GetParameterValuesResponse>`+resp+`</cwmp:GetParameterValuesResponse>`))
		}},
		{"no mustUnderstand, white space around the ID", func(id string) string {
			return string(soapEnv("<cwmp:ID>\n "+id+" \n</cwmp:ID>", `<cwmp:GetParameterValuesResponse>`+resp+`</cwmp:GetParameterValuesResponse>`))
		}},
		{"SOAP-ENV and ns1", func(id string) string {
			return `<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/" xmlns:ns1="urn:dslforum-org:cwmp-1-2"` + xsi +
				`><SOAP-ENV:Header><ns1:ID SOAP-ENV:mustUnderstand="1">` + id + `</ns1:ID></SOAP-ENV:Header><SOAP-ENV:Body><ns1:GetParameterValuesResponse>` +
				`<ParameterList SOAP-ENC:arrayType="ns1:ParameterValueStruct[1]">` + resp[len("<ParameterList>"):] +
				`</ns1:GetParameterValuesResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>`
		}},
		{"default namespace", func(id string) string {
			return `<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"` + xsi + `><Header><ID xmlns="urn:dslforum-org:cwmp-1-2">` + id +
				`</ID></Header><Body><GetParameterValuesResponse xmlns="urn:dslforum-org:cwmp-1-2">` + strings.ReplaceAll(resp, "<ParameterList>", `<ParameterList xmlns="">`) +
				`</GetParameterValuesResponse></Body></Envelope>`
		}},
		{"qualified arguments", func(id string) string {
			return string(soapEnv(idHeader(id), `<cwmp:GetParameterValuesResponse><cwmp:ParameterList><cwmp:ParameterValueStruct><cwmp:Name>Device.X.A</cwmp:Name>`+
				`<cwmp:Value xsi:type="xsd:string">quirk</cwmp:Value></cwmp:ParameterValueStruct></cwmp:ParameterList></cwmp:GetParameterValuesResponse>`))
		}},
		{"cwmp-1-0 in a cwmp-1-2 session", func(id string) string {
			return `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0"` + xsi +
				`><soap:Header><cwmp:ID soap:mustUnderstand="1">` + id + `</cwmp:ID></soap:Header><soap:Body><cwmp:GetParameterValuesResponse>` + resp +
				`</cwmp:GetParameterValuesResponse></soap:Body></soap:Envelope>`
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, c, r := runRaw(t, gpv("Device.X.A"), func(m cwmp.Message, id string) []byte {
				if _, ok := m.(*cwmp.GetParameterValues); !ok {
					return nil
				}
				return []byte(tt.body(id))
			})
			if len(c.sent) != 1 || r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
				t.Fatalf("sent %v, report %v", c.methods(), r)
			}
			if got := resultValues(r); got["Device.X.A"] != [2]string{"quirk", "xsd:string"} {
				t.Fatalf("values %v", got)
			}
			if p := param(v.inv.last(t), "Device.X.A"); p == nil || p.Value != "quirk" {
				t.Fatalf("diff has %+v", p)
			}
			// An answer without a cwmp:ID was matched by method: counted.
			want := map[string]int64{}
			if strings.HasPrefix(tt.name, "no Header") || strings.HasPrefix(tt.name, "empty") {
				want["missing_id GetParameterValues"] = 1
			}
			if q := v.quirks(t); !maps.Equal(q, want) {
				t.Fatalf("quirks %v, want %v", q, want)
			}
		})
	}
}

// Case 9: values without xsi:type, numbers with a "+" or white space,
// booleans as 1 or TRUE: the task keeps each value as the codec
// normalises it (docs/protocol.md §13 input 6), and the session goes on.
func TestQuirkGPVValueTypes(t *testing.T) {
	values := pvs("Device.X.NoType", " as sent ", "") +
		pvs("Device.X.Plus", "+42", "xsd:unsignedInt") +
		pvs("Device.X.Spaces", "\n 7 \t", "xsd:unsignedInt") +
		pvs("Device.X.One", "1", "xsd:boolean") +
		pvs("Device.X.True", "true", "xsd:boolean") +
		pvs("Device.X.Upper", "TRUE", "xsd:boolean") +
		pvs("Device.X.Int", " -0012 ", "xsd:int") +
		pvs("Device.X.Empty", "", "xsd:") +
		pvs("Device.X.Bogus", "n/a", "xsd:unsignedInt") +
		`<ParameterValueStruct><Name>Device.X.NoValue</Name></ParameterValueStruct>`
	names := []string{"Device.X.NoType", "Device.X.Plus", "Device.X.Spaces", "Device.X.One", "Device.X.True", "Device.X.Upper", "Device.X.Int",
		"Device.X.Empty", "Device.X.Bogus", "Device.X.NoValue"}
	v, _, r := runRaw(t, gpv(names...), func(m cwmp.Message, id string) []byte {
		return soapEnv(idHeader(id), gpvResponse(values))
	})
	if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("report %v", r)
	}
	want := map[string][2]string{
		"Device.X.NoType":  {" as sent ", "xsd:string"},
		"Device.X.Plus":    {"42", "xsd:unsignedInt"},
		"Device.X.Spaces":  {"7", "xsd:unsignedInt"},
		"Device.X.One":     {"true", "xsd:boolean"},
		"Device.X.True":    {"true", "xsd:boolean"},
		"Device.X.Upper":   {"true", "xsd:boolean"},
		"Device.X.Int":     {"-12", "xsd:int"},
		"Device.X.Empty":   {"", "xsd:string"},
		"Device.X.Bogus":   {"n/a", "xsd:string"},
		"Device.X.NoValue": {"", "xsd:string"},
	}
	got := resultValues(r)
	d := v.inv.last(t)
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: result %q, want %q", name, got[name], w)
		}
		if p := param(d, name); p == nil || p.Value != w[0] || p.Type != w[1] {
			t.Errorf("%s: diff has %+v", name, p)
		}
	}
}

// Case 10: the empty POST that asks for the ACS's request reaches the
// engine as no body at all (Content-Length: 0, or a chunked body without
// data: the gateway reads both as empty, services/gateway body.go), or as
// a body of white space only (and a byte-order mark), which is just as
// empty (docs/protocol.md §4.1, §13 input 8). Each gets the task's
// request.
func TestQuirkEmptyPOSTForms(t *testing.T) {
	for _, tt := range []struct {
		name string
		body []byte
	}{
		{"nil", nil},
		{"zero length", []byte{}},
		{"white space", []byte(" \r\n\t\n")},
		{"BOM and a newline", []byte("\xef\xbb\xbf\n")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newTaskEnv(t, nil)
			v.queue.ids = []string{"t1"}
			v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.X.A"))
			c := v.cpe(answers)
			c.inform(v.e, periodic)
			gpvTaskDone(t, v, c, tt.body)
		})
	}
}

// An AddObjectResponse without InstanceNumber (or 0, which CWMP does not
// allow): the CPE created an object whose number it did not say. The
// task is done with the status, no path, and no "Table.0." in inventory.
func TestQuirkAddObjectWithoutInstance(t *testing.T) {
	for _, tt := range []struct{ name, body string }{
		{"missing", `<cwmp:AddObjectResponse><Status>0</Status></cwmp:AddObjectResponse>`},
		{"zero", `<cwmp:AddObjectResponse><InstanceNumber>0</InstanceNumber><Status>1</Status></cwmp:AddObjectResponse>`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			op := &tasksv1.Operation{Kind: &tasksv1.Operation_AddObject{AddObject: &tasksv1.AddObject{ObjectName: "Device.NAT.PortMapping."}}}
			v, _, r := runRaw(t, op, func(_ cwmp.Message, id string) []byte { return soapEnv(idHeader(id), tt.body) })
			res := r.GetResult().GetAddObject()
			if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE || res.GetInstanceNumber() != 0 || res.GetObjectPath() != "" ||
				!strings.Contains(r.GetDetail(), "instance number") {
				t.Fatalf("report %v", r)
			}
			for _, p := range v.inv.last(t).Parameters {
				if strings.HasPrefix(p.Path, "Device.NAT.PortMapping.") {
					t.Fatalf("diff has %+v", p)
				}
			}
		})
	}
}

// A bare SOAP Fault, without the cwmp:Fault detail: the task's fault
// keeps what the CPE said (code 0, its SOAP faultcode and faultstring).
func TestQuirkBareSOAPFault(t *testing.T) {
	_, _, r := runRaw(t, gpv("Device.X.A"), func(_ cwmp.Message, id string) []byte {
		return soapEnv(idHeader(id), `<soap-env:Fault><faultcode>soap-env:Server</faultcode><faultstring>Internal error</faultstring></soap-env:Fault>`)
	})
	f := r.GetFault()
	if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_FAULT || f.GetCode() != 0 || f.GetSource() != tasksv1.FaultSource_FAULT_SOURCE_CPE ||
		!strings.Contains(f.GetFaultString(), "Internal error") || !strings.Contains(f.GetFaultString(), "Server") {
		t.Fatalf("report %v", r)
	}
}

// A CPE request (GetRPCMethods, TransferComplete) sent while the task's
// request is outstanding, in place of its answer: it is answered, the
// request stays outstanding, and the answer that follows finishes the
// task (cwmp.Session; docs/protocol.md §4.3).
func TestQuirkCPERequestWhileOutstanding(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, spv("", "Device.X.A", "on", "xsd:string"))
	c := v.cpe(answers)
	c.inform(v.e, periodic)
	m, id := c.step(v.e, nil)
	if _, ok := m.(*cwmp.SetParameterValues); !ok {
		t.Fatalf("sent %v", m)
	}
	c.request(v.e, &cwmp.GetRPCMethods{})
	c.request(v.e, &cwmp.TransferComplete{CommandKey: "nobody", StartTime: cwmp.UnknownTime, CompleteTime: cwmp.UnknownTime})
	if next, _ := c.step(v.e, c.encode(&cwmp.SetParameterValuesResponse{}, id)); next != nil {
		t.Fatalf("sent %s", next.Method())
	}
	if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("report %v", r)
	}
	if len(c.sent) != 1 {
		t.Fatalf("sent %v", c.methods())
	}
	if p := param(v.inv.last(t), "Device.X.A"); p == nil || p.Value != "on" {
		t.Fatalf("diff has %+v", p)
	}
}

// Informs as odd CPE stacks write them (docs/protocol.md §1.2, §2.1, §5.3):
// the cwmp namespace with a trailing slash or in capitals, a UTF-16 body
// with its byte order mark, RetryCount -1 and MaxEnvelopes "0" or
// missing, vendor elements inside the Inform, CRLF and runs of white space.
// Each opens a session answered in the standard namespace, and the task
// queued for the device runs in it.
func TestQuirkInformOddities(t *testing.T) {
	inform := func(ns, extra string) string {
		return "<soap-env:Envelope xmlns:soap-env=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:cwmp=\"" + ns + "\">\r\n" +
			"<soap-env:Header>\r\n  <cwmp:ID soap-env:mustUnderstand=\"1\">inf-1</cwmp:ID>\r\n</soap-env:Header>\r\n<soap-env:Body>\r\n<cwmp:Inform>\r\n" +
			"  <DeviceId>\r\n    <Manufacturer>Acme</Manufacturer>\r\n    <OUI>00d09e</OUI>\r\n    <ProductClass>Router</ProductClass>\r\n    <SerialNumber>\r\n      SN1\r\n    </SerialNumber>\r\n  </DeviceId>\r\n" +
			"  <Event><EventStruct><EventCode>\r\n 2 PERIODIC \r\n</EventCode><CommandKey></CommandKey></EventStruct></Event>\r\n" +
			extra + "  <CurrentTime>1970-01-01T00:00:07</CurrentTime>\r\n" +
			"  <ParameterList><ParameterValueStruct><Name>Device.DeviceInfo.SoftwareVersion</Name><Value xsi:type=\"xsd:string\">1.0</Value></ParameterValueStruct></ParameterList>\r\n" +
			"</cwmp:Inform>\r\n</soap-env:Body>\r\n</soap-env:Envelope>\r\n"
	}
	utf16LE := func(s string) []byte {
		b := []byte{0xFF, 0xFE}
		for _, u := range utf16.Encode([]rune(s)) {
			b = append(b, byte(u), byte(u>>8))
		}
		return b
	}
	for _, tt := range []struct {
		name, ns string
		body     []byte
	}{
		{"namespace with a trailing slash", cwmp.NS1_0, []byte(inform("urn:dslforum-org:cwmp-1-0/", "<MaxEnvelopes>1</MaxEnvelopes><RetryCount>0</RetryCount>"))},
		{"namespace in capitals", cwmp.NS1_1, []byte(inform("URN:DSLFORUM-ORG:CWMP-1-1", "<MaxEnvelopes>1</MaxEnvelopes>"))},
		{"UTF-16 with a byte order mark", cwmp.NS1_2, utf16LE(`<?xml version="1.0" encoding="UTF-16"?>` + inform(cwmp.NS1_2, "<RetryCount>0</RetryCount>"))},
		{"RetryCount -1, MaxEnvelopes 0", cwmp.NS1_2, []byte(inform(cwmp.NS1_2, "<MaxEnvelopes>0</MaxEnvelopes><RetryCount>-1</RetryCount>"))},
		{"vendor elements, hints missing", cwmp.NS1_2, []byte(inform(cwmp.NS1_2, "<X_ACME_Uptime>\r\n  <Seconds>5</Seconds>\r\n</X_ACME_Uptime>"+strings.Repeat(" \r\n\t", 500)))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newTaskEnv(t, nil)
			v.queue.ids = []string{"t1"}
			v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.X.A"))
			c := v.cpe(answers)
			c.sid = "s1"
			l, err := v.store.Leases.Acquire(context.Background(), testTenant, c.key, c.sid, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			r := c.exchange(v.e, &engine.Request{SessionID: c.sid, NewSession: true, Tenant: testTenant, DeviceKey: c.key,
				Lease: &engine.Lease{FencingToken: l.FencingToken}, Body: tt.body, RemoteAddr: "192.0.2.1:7000"})
			if r.Status != 200 {
				t.Fatalf("Inform answered %d %s", r.Status, r.Body)
			}
			env, err := cwmp.Decode(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := env.Body.(*cwmp.InformResponse); !ok || env.Namespace != tt.ns || env.Header.ID != "inf-1" {
				t.Fatalf("answered %s in %q with ID %q, want InformResponse in %q with ID inf-1:\n%s", env.Body.Method(), env.Namespace, env.Header.ID, tt.ns, r.Body)
			}
			gpvTaskDone(t, v, c, nil)
		})
	}
}

// gpvTaskDone sends body (nil: an empty POST) in c's session, expects the
// GetParameterValues of task t1 in return, answers it, and checks that the
// session ends and t1 is reported done.
func gpvTaskDone(t *testing.T, v *taskEnv, c *taskCPE, body []byte) {
	t.Helper()
	m, id := c.step(v.e, body)
	if _, ok := m.(*cwmp.GetParameterValues); !ok {
		t.Fatalf("answered %v, want the task's GetParameterValues", m)
	}
	if m, _ := c.step(v.e, c.encode(answers(m), id)); m != nil {
		t.Fatalf("sent %s", m.Method())
	}
	if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("report %v", r)
	}
}
