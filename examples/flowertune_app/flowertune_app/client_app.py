"""flowertune-app: A Flower / FlowerTune app."""

import os
import warnings

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.config import unflatten_dict
from peft import get_peft_model_state_dict, set_peft_model_state_dict

from flowertune_app.dataset import as_config, formatting_prompts_func, load_data, replace_keys
from flowertune_app.models import cosine_annealing, get_model, get_tokenizer, train_steps
from flwr_trust.mods import trust_mod  # flwr-trust

# Avoid warnings
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAY_DISABLE_DOCKER_CPU_WARNING"] = "1"
warnings.filterwarnings("ignore", category=UserWarning)


# Flower ClientApp
app = ClientApp(mods=[trust_mod])  # flwr-trust


@app.train()
def train(msg: Message, context: Context):
    """Train the model on local data."""
    # Parse config
    partition_id = context.node_config["partition-id"]
    num_partitions = context.node_config["num-partitions"]
    num_rounds = context.run_config["num-server-rounds"]
    cfg = as_config(replace_keys(unflatten_dict(context.run_config)))
    args = cfg.train.training_arguments

    # Let's get the client partition
    trainset = load_data(partition_id, num_partitions, cfg.dataset.name)
    tokenizer = get_tokenizer(cfg.model.name)

    # Load the model and initialize it with the received weights
    model = get_model(cfg.model)
    set_peft_model_state_dict(model, msg.content["arrays"].to_torch_state_dict())

    # Set learning rate for current round
    new_lr = cosine_annealing(msg.content["config"]["server-round"], num_rounds,
                              cfg.train.learning_rate_max, cfg.train.learning_rate_min)

    # Do local training
    train_loss = train_steps(model, tokenizer, formatting_prompts_func(trainset),
                             max_steps=args.max_steps,
                             batch_size=args.per_device_train_batch_size,
                             seq_length=cfg.train.seq_length, learning_rate=new_lr)

    # Construct and return reply Message
    model_record = ArrayRecord(get_peft_model_state_dict(model))
    metrics = {"train_loss": train_loss, "num-examples": len(trainset)}
    metric_record = MetricRecord(metrics)
    content = RecordDict({"arrays": model_record, "metrics": metric_record})
    return Message(content=content, reply_to=msg)
