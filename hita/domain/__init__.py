"""Pure types and rules of the hotel-user domain: no I/O, no framework."""
