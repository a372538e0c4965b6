"""Ray: the cluster (`ray_cluster`), Ray Tune's run of the trials (`tune_runner`), progress."""
