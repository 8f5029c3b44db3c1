"""Remote site surveys over WebRTC with tamper-evident evidence."""
