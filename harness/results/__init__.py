"""Results: the one model of a run (`model`) and the writers that only read it (`writers`)."""
