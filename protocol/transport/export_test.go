package transport

// Names the external tests need that the package's users do not.
var NewYamuxSession = newYamuxSession

const StreamWindow = streamWindow

const RelayIncomingStreams = relayIncomingStreams
