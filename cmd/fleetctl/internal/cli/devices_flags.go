package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *stringList) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	*l = append(*l, s)
	return nil
}

// timeFlag is an instant given as RFC 3339 or as a duration ago (from now
// when ahead, as an expiry is). The duration is kept as given and turned
// into an instant when the command runs, against one clock reading for
// every flag.
type timeFlag struct {
	raw   string
	at    time.Time
	d     time.Duration
	ahead bool
}

func (f *timeFlag) String() string {
	if f == nil {
		return ""
	}
	return f.raw
}

func (f *timeFlag) Set(s string) error {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		f.raw, f.at, f.d = s, t, 0
		return nil
	}
	d, err := parseAgo(s)
	switch {
	case err != nil && f.ahead:
		return errors.New("want an RFC 3339 time or a positive duration such as 24h or 90d")
	case err != nil:
		return errors.New("want an RFC 3339 time (2024-05-01T12:00:00Z) or a duration ago (90m, 24h, 7d)")
	}
	f.raw, f.at, f.d = s, time.Time{}, d
	return nil
}

// timestamp is the flag's instant, nil when the flag was not given.
func (f *timeFlag) timestamp(now time.Time) *timestamppb.Timestamp {
	switch {
	case f.raw == "":
		return nil
	case f.d > 0 && f.ahead:
		return timestamppb.New(now.Add(f.d))
	case f.d > 0:
		return timestamppb.New(now.Add(-f.d))
	}
	return timestamppb.New(f.at)
}

// parseAgo parses a positive Go duration, or a whole number of days with
// the suffix "d", which time.ParseDuration lacks and operators ask for
// first ("devices that did not inform for 7d").
func parseAgo(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 16)
		if err != nil || days == 0 {
			return 0, errors.New("bad day count")
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, errors.New("not positive")
	}
	return d, nil
}

// conditionList is the repeatable -where flag.
type conditionList []*inventoryv1.ParameterCondition

func (l *conditionList) String() string {
	if l == nil {
		return ""
	}
	parts := make([]string, len(*l))
	for i, c := range *l {
		parts[i] = fmt.Sprintf("%s %s %s", c.GetPath(), c.GetOperator(), c.GetValue())
	}
	return strings.Join(parts, "; ")
}

func (l *conditionList) Set(s string) error {
	if len(*l) == maxConditions {
		return fmt.Errorf("at most %d -where conditions", maxConditions)
	}
	c, err := parseCondition(s)
	if err != nil {
		return err
	}
	*l = append(*l, c)
	return nil
}

// operators are the -where operator names, the enum's names in lower case.
var operators = map[string]inventoryv1.ConditionOperator{
	"eq":         inventoryv1.ConditionOperator_CONDITION_OPERATOR_EQ,
	"ne":         inventoryv1.ConditionOperator_CONDITION_OPERATOR_NE,
	"lt":         inventoryv1.ConditionOperator_CONDITION_OPERATOR_LT,
	"gt":         inventoryv1.ConditionOperator_CONDITION_OPERATOR_GT,
	"exists":     inventoryv1.ConditionOperator_CONDITION_OPERATOR_EXISTS,
	"not_exists": inventoryv1.ConditionOperator_CONDITION_OPERATOR_NOT_EXISTS,
	"prefix":     inventoryv1.ConditionOperator_CONDITION_OPERATOR_PREFIX,
}

const operatorList = "eq, ne, lt, gt, prefix, exists or not_exists"

// parseCondition parses 'PATH OP VALUE'. PATH and OP are words; VALUE is
// the rest of the text, trimmed, or a Go-quoted string when white space at
// its ends matters or it is empty.
func parseCondition(s string) (*inventoryv1.ParameterCondition, error) {
	path, rest := nextWord(s)
	if path == "" {
		return nil, errors.New("want 'PATH OP VALUE', e.g. 'Device.DeviceInfo.SoftwareVersion eq 1.2.3'")
	}
	opName, rest := nextWord(rest)
	if opName == "" {
		return nil, fmt.Errorf("no operator after %s: want 'PATH OP VALUE' with OP one of %s", path, operatorList)
	}
	op, ok := operators[strings.ToLower(opName)]
	if !ok {
		return nil, fmt.Errorf("unknown operator %q: want %s", opName, operatorList)
	}
	opName = strings.ToLower(opName)
	value := strings.TrimSpace(rest)
	noValue := op == inventoryv1.ConditionOperator_CONDITION_OPERATOR_EXISTS ||
		op == inventoryv1.ConditionOperator_CONDITION_OPERATOR_NOT_EXISTS
	switch {
	case noValue && value != "":
		return nil, fmt.Errorf("operator %s takes no VALUE, got %q", opName, value)
	case noValue:
	case value == "":
		return nil, fmt.Errorf("operator %s needs a VALUE (write \"\" for the empty string)", opName)
	case strings.HasPrefix(value, `"`):
		u, err := strconv.Unquote(value)
		if err != nil {
			return nil, fmt.Errorf("VALUE %s starts with a quote but is not a quoted string", value)
		}
		value = u
	}
	return &inventoryv1.ParameterCondition{Path: path, Operator: op, Value: value}, nil
}

// nextWord splits s into its first white-space-separated word and the rest.
func nextWord(s string) (word, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}
