package notify

// SetBeforeSend makes the publisher's sender call f before each event. Set it
// before the first Publish.
func SetBeforeSend(p *Publisher, f func(Event)) { p.beforeSend = f }
