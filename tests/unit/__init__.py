"""Unit tests: pure logic, no AWS."""
