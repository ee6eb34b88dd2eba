"""The playground: an HTTP API and one web page over a trained run (``chargen serve``)."""
