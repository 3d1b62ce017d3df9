"""The Flower App of `kapps federate`: one ClientApp and one ServerApp for every run.

Under simulation, `kapps federate` (`run.py`) hands `client_app` to Flower's simulation
engine with a ServerApp around `serve`. Deployed, the folder `flower_app/`
(whose pyproject.toml names `client_app` and `server_app` below) is what
`flwr run` sends to a SuperLink: its ServerApp finds the run folder in the
run config (`run-dir`), and each SuperNode's ClientApp learns the config from
the server's messages and its share from its node config (`partition-id`,
and optionally `competition-dir`: where the competition lies on that machine).
"""

import yaml
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from kapps.errors import ConfigError
from pipelines.config import load_config
from pipelines.federated.client import train_round
from pipelines.federated.server import CONFIG_KEY, OFFSET_KEY, serve
from pipelines.runs import RunFolder

client_app = ClientApp()


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    text = config[CONFIG_KEY]
    client = int(context.node_config["partition-id"])
    if "competition-dir" in context.node_config:  # the competition's place on this machine
        data = yaml.safe_load(text)
        data["competition"]["dir"] = str(context.node_config["competition-dir"])
        text = yaml.safe_dump(data, sort_keys=False)
    clients = yaml.safe_load(text)["federated"]["clients"]
    if int(context.node_config.get("num-partitions", clients)) != clients:
        raise ConfigError(
            f"this node was started with num-partitions={context.node_config['num-partitions']}"
            f", the run has federated.clients={clients}"
        )
    weights, examples, loss = train_round(
        text,
        client,
        msg.content["arrays"].to_numpy_ndarrays(),
        int(config["server-round"]) + int(config.get(OFFSET_KEY, 0)),
        float(config.get("proximal-mu", 0.0)),
    )
    reply = RecordDict(
        {
            "arrays": ArrayRecord(weights),
            "metrics": MetricRecord({"num-examples": examples, "loss": loss}),
        }
    )
    return Message(content=reply, reply_to=msg)


server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    run = RunFolder(context.run_config["run-dir"])
    serve(grid, load_config(run.config), run)
