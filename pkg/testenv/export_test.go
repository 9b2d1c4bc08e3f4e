package testenv

// SweepStale exposes sweepStale to the external tests.
var SweepStale = sweepStale

// BaseDir exposes baseDir to the external tests.
var BaseDir = baseDir
