"""Property-based fuzzing (hypothesis) of everything that reads untrusted input."""
