package proxy

// remote is the device's address as its transport established it (the
// source a trusted balancer's PROXY protocol header carries), else the
// socket's peer: what the attempt's log line and decision log show.
func (a *attempt) remote() string {
	if a.conn.Conn != nil {
		return a.conn.Conn.RemoteAddr().String()
	}
	return a.raw.RemoteAddr().String()
}
