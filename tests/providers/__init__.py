"""Scripted provider stubs for the real-CLI tests: each speaks one provider's wire
format (streaming included) on 127.0.0.1 and stops by itself."""
