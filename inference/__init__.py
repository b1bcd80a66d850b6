"""The pre-labelling pipeline as a plain library: detector, embedder, search space and the stages
that turn neighbours into ranked product candidates. No Django, no settings: callers pass config
objects and arrays, so a notebook or a worker on another machine can use it as it is."""
