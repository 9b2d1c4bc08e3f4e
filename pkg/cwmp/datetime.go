package cwmp

import (
	"fmt"
	"time"
)

// Time parses d leniently (docs/protocol.md §9), because CPEs send every variant of
// xsd:dateTime:
//   - "Z", "+hh:mm", "+hhmm" (strftime %z) or "+hh" zones, or none: a time
//     without a zone is taken as UTC, the only assumption that needs no
//     knowledge of the CPE's local zone;
//   - unpadded month, day, hour, minute and second ("2014-10-24T0:4:42");
//   - fractional seconds of any length (kept to the nanosecond);
//   - a space instead of the "T";
//   - surrounding white space.
//
// Unknown Time, "0001-01-01T00:00:00Z", parses to the zero time.Time, so
// IsZero reports it; boot-relative times (year 0001) parse as such.
func (d DateTime) Time() (time.Time, error) {
	s := trimXMLSpace(string(d))
	t, ok := parseDateTime(s)
	if !ok {
		return time.Time{}, fmt.Errorf("cwmp: parse dateTime %q: not an xsd:dateTime", string(d))
	}
	return t, nil
}

// NewDateTime formats t as a strict xsd:dateTime in UTC with a "Z" zone and
// whole seconds: CWMP times have second resolution and some CPE parsers
// refuse fractions. The zero time.Time gives UnknownTime.
func NewDateTime(t time.Time) DateTime {
	return DateTime(t.UTC().Format("2006-01-02T15:04:05Z"))
}

func parseDateTime(s string) (time.Time, bool) {
	t, _, ok := parseDateTimeZone(s)
	return t, ok
}

// parseDateTimeZone is parseDateTime that also reports whether s had a
// zone.
func parseDateTimeZone(s string) (t time.Time, zone, ok bool) {
	p := dtParser{s: s}
	year, ok := p.number(4, 9)
	if !ok || !p.expect('-') {
		return time.Time{}, false, false
	}
	month, ok1 := p.number(1, 2)
	ok2 := p.expect('-')
	day, ok3 := p.number(1, 2)
	if !ok1 || !ok2 || !ok3 || p.i >= len(s) || (s[p.i] != 'T' && s[p.i] != 't' && s[p.i] != ' ') {
		return time.Time{}, false, false
	}
	p.i++
	hour, ok1 := p.number(1, 2)
	ok2 = p.expect(':')
	minute, ok3 := p.number(1, 2)
	ok4 := p.expect(':')
	sec, ok5 := p.number(1, 2)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return time.Time{}, false, false
	}
	nsec := 0
	if p.i < len(s) && s[p.i] == '.' {
		p.i++
		start := p.i
		scale := 100000000
		for p.i < len(s) && s[p.i] >= '0' && s[p.i] <= '9' {
			nsec += int(s[p.i]-'0') * scale
			scale /= 10
			p.i++
		}
		if p.i == start {
			return time.Time{}, false, false
		}
	}
	loc := time.UTC
	if p.i < len(s) {
		zone = true
		switch c := s[p.i]; c {
		case 'Z', 'z':
			p.i++
		case '+', '-':
			p.i++
			zh, ok := p.number(2, 2)
			if !ok {
				return time.Time{}, false, false
			}
			zm := 0
			if p.i < len(s) {
				p.expect(':')
				if zm, ok = p.number(2, 2); !ok {
					return time.Time{}, false, false
				}
			}
			if zh > 23 || zm > 59 {
				return time.Time{}, false, false
			}
			off := zh*3600 + zm*60
			if c == '-' {
				off = -off
			}
			if off != 0 {
				loc = time.FixedZone("", off)
			}
		default:
			return time.Time{}, false, false
		}
	}
	if p.i != len(s) {
		return time.Time{}, false, false
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		minute > 59 || sec > 60 || hour > 24 || (hour == 24 && (minute != 0 || sec != 0 || nsec != 0)) {
		return time.Time{}, false, false
	}
	// time.Date carries 24:00:00 into the next day and a leap second into
	// the next minute, which is what they mean.
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc), zone, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// dtParser reads a dateTime left to right.
type dtParser struct {
	s string
	i int
}

// number reads min..max decimal digits.
func (p *dtParser) number(minDigits, maxDigits int) (int, bool) {
	v, start := 0, p.i
	for p.i < len(p.s) && p.i-start < maxDigits && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		v = v*10 + int(p.s[p.i]-'0')
		p.i++
	}
	return v, p.i-start >= minDigits
}

func (p *dtParser) expect(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}
