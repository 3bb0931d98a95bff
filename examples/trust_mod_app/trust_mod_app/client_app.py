"""ClientApp: LoRA fine-tuning, FlowerTune style, with flwr-trust's `trust_mod` added.

The only flwr-trust lines: the import, ``mods=[trust_mod]``, `use_model` (the mod probes the
app's own model instead of loading a second copy) and `provide_local_data` (optional: without
it the private local metrics are reported absent, with trust.status.private = 2).
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from peft import get_peft_model_state_dict, set_peft_model_state_dict

from flwr_trust.mods import provide_local_data, trust_mod, use_model
from trust_mod_app.task import eval_loss, get_model, local_texts, train_steps

app = ClientApp(mods=[trust_mod])


def _model(context: Context):
    cfg = context.run_config
    model, tokenizer = get_model(str(cfg["model.name"]), int(cfg["model.lora.peft-lora-r"]),
                                 int(cfg["model.lora.peft-lora-alpha"]))
    use_model(context, model, tokenizer)  # the mod probes this model: one copy per client
    return model, tokenizer


def _data(context: Context):
    train, heldout, styles = local_texts(int(context.node_config.get("partition-id", 0)))
    provide_local_data(context, train=train, heldout=heldout, heldout_groups=styles)
    return train, heldout


@app.train()
def train(msg: Message, context: Context) -> Message:
    model, tokenizer = _model(context)
    set_peft_model_state_dict(model, msg.content["arrays"].to_torch_state_dict())
    texts, _ = _data(context)
    loss = train_steps(model, tokenizer, texts, int(context.run_config["local-steps"]),
                       float(context.run_config["learning-rate"]))
    content = RecordDict({"arrays": ArrayRecord(get_peft_model_state_dict(model)),
                          "metrics": MetricRecord({"train_loss": loss,
                                                   "num-examples": len(texts)})})
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    model, tokenizer = _model(context)
    set_peft_model_state_dict(model, msg.content["arrays"].to_torch_state_dict())
    _, heldout = _data(context)
    metrics = MetricRecord({"eval_loss": eval_loss(model, tokenizer, heldout),
                            "num-examples": len(heldout)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
