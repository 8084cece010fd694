"""Interchange with other frameworks: parameter layouts (:mod:`.torch_rnn`) and the PyTorch bridge
(:mod:`specc.torch`).  Nothing here imports PyTorch until a function that needs it is called."""
