"""Federated learning with Flower: clients keep their rows, a server averages their models.

`partition` deals the training rows out (IID or Dirichlet by class), `client`
trains one client's round with Keras `fit`, `server` runs Flower's FedAvg or
FedProx and scores the global model, `app` holds the Flower App (ClientApp and
ServerApp) that both the simulation and a deployment run, and `run` is
`kapps federate`.
"""

import os

# Flower reports usage to its makers unless told not to, read once when flwr is
# first imported: so here, before any module of this package imports it.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
