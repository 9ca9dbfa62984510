package client

// WithClock is withClock, for the tests of package client_test.
var WithClock = withClock
