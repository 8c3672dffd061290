"""The network (plain torch) and, in separate training-only modules, its Lightning wrappers."""
