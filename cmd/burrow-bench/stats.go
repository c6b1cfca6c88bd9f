package main

import (
	"math"
	"slices"
	"time"
)

// sample is the values one measurement took over the runs.
type sample []float64

func (s sample) sorted() []float64 {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// median is the middle value (the mean of the two middle ones for an even count).
func (s sample) median() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	c := s.sorted()
	m := len(c) / 2
	if len(c)%2 == 1 {
		return c[m]
	}
	return (c[m-1] + c[m]) / 2
}

func (s sample) min() float64 { return slices.Min(s) }
func (s sample) max() float64 { return slices.Max(s) }

// percentile is the nearest-rank percentile p (0-100) of ds, in milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	c := slices.Clone(ds)
	slices.Sort(c)
	rank := int(math.Ceil(p / 100 * float64(len(c))))
	rank = min(max(rank, 1), len(c))
	return ms(c[rank-1])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mbps is bytes over d in MB/s (10^6 bytes per second).
func mbps(bytes int64, d time.Duration) float64 {
	return float64(bytes) / 1e6 / d.Seconds()
}
