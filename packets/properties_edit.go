package packets

// Without returns a copy of p without the properties with the given id
// (p itself is not changed): with With, it is how a proxy lowers a
// property of a packet it relays (a CONNACK's Maximum QoS, say). What
// follows a property that p does not hold whole is kept as it is.
func (p Properties) Without(id PropertyID) Properties {
	out := make(Properties, 0, len(p))
	for off, end := 0, 0; off < len(p); off = end {
		if end = p.next(off); end < 0 {
			return append(out, p[off:]...)
		}
		if PropertyID(p[off]) != id {
			out = append(out, p[off:end]...)
		}
	}
	return out
}
