"""Tables and figures of the paper, regenerated from the pipeline's metrics."""
