"""Speed, memory and load scripts (`make bench`, `make load`); run as files, imported by tests."""
