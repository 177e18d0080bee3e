"""flagbridge test suite."""
