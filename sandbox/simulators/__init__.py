"""Stand-ins for the third-party services the pipelines call, served over real HTTP."""
