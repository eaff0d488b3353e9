package limits

// debtBucket is a token debtBucket that may go into debt: a rate limit (pub_rate,
// pub_bytes) of rate tokens a second and a burst of as many. A cost no
// larger than the burst goes when the debtBucket holds it; a larger one goes
// when the debtBucket is full, and leaves it in debt, so that a PUBLISH
// larger than a pub_bytes debtBucket is slowed, never refused. Times are
// monotonic nanoseconds (mono); the debtBucket is what it held at `at`.
type debtBucket struct {
	tokens float64
	at     int64
	primed bool // tokens has been set: a new debtBucket starts full
}

// level is what the debtBucket holds at t (no earlier than at), rate being
// its rate and burst.
func (b *debtBucket) level(t int64, rate float64) float64 {
	if !b.primed {
		return rate
	}
	return min(rate, b.tokens+float64(t-b.at)*rate/1e9)
}

// when is the earliest time, from now, at which cost may go.
func (b *debtBucket) when(now int64, cost, rate float64) int64 {
	t := max(now, b.at)
	need := min(cost, rate)
	if have := b.level(t, rate); have < need {
		t += int64((need - have) / rate * 1e9)
	}
	return t
}

// take spends cost at t (a time when returned, or later).
func (b *debtBucket) take(t int64, cost, rate float64) {
	t = max(t, b.at)
	b.tokens, b.at, b.primed = b.level(t, rate)-cost, t, true
}
