"""Connected SDK guards: heartbeats and fleet view."""
