"""Supervised fine-tuning of an instruction synthesizer (or a downstream model) from a YAML recipe.

    accelerate launch [--config_file recipes/accelerate/X.yaml] recipes/sft.py --config recipes/Y.yaml [--key value ...]

Recipe keys: genstruct_train.train.config.GenstructArgs + TRL's SFTConfig + TRL's ModelConfig. The run
resumes from the last checkpoint in output_dir, and leaves there a reusable checkpoint: LoRA adapter
(plus output_dir/merged with `merge: true`) or full weights, tokenizer with the format's chat template,
generation_config.json, README.md model card and train_report.json.
"""

import logging
import sys
from pathlib import Path

import transformers
from trl import get_peft_config, get_quantization_config

from genstruct_train.errors import GenstructError
from genstruct_train.formats import get_format
from genstruct_train.threads import configure_threads
from genstruct_train.tokenization import load_tokenizer
from genstruct_train.train.checkpoint import (
    check_hub_push,
    last_complete_checkpoint,
    loss_plot_callback,
    merge_adapter,
    save_checkpoint,
)
from genstruct_train.train.config import parse_recipe
from genstruct_train.train.data import load_train_data
from genstruct_train.train.model import build_base_model, model_init_kwargs
from genstruct_train.train.trainer import GenstructSFTTrainer

logger = logging.getLogger("genstruct_train.sft")


def main(argv: list[str]) -> None:
    # Recipe, validated before anything heavy is loaded
    args, training_args, model_args = parse_recipe(argv)
    threads = configure_threads() if training_args.device.type == "cpu" else None
    check_hub_push(training_args)  # the final checkpoint is pushed after training: fail now, not then
    transformers.set_seed(training_args.seed)

    # Logging
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO,
                        handlers=[logging.StreamHandler(sys.stdout)])
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    logger.info(f"genstruct args {args}\nmodel args {model_args}\ntorch threads {threads or 'default (GPU)'}")

    # Last checkpoint: resume automatically
    output_dir = Path(training_args.output_dir)
    last_checkpoint = last_complete_checkpoint(output_dir)  # skips a checkpoint whose save was cut short
    resume = training_args.resume_from_checkpoint or last_checkpoint
    if resume:
        logger.info(f"resuming from {resume}")

    # Tokenizer with the format's chat template (fails here if it cannot render the format)
    fmt = get_format(args.format)
    tokenizer = load_tokenizer(args.tokenizer_name_or_path or model_args.model_name_or_path, format=fmt)

    # Data: pre-tokenized input_ids + completion_mask, so TRL keeps our exact prompt/completion boundary
    with training_args.main_process_first(desc="data and base model"):
        data = load_train_data(args, training_args, tokenizer, fmt)
        if args.base_model_config:
            model_args.model_name_or_path = build_base_model(args, training_args)
    logger.info(data.tokenized)
    logger.info(f"data from {data.source}: {data.counts}")
    if training_args.completion_only_loss is None:
        training_args.completion_only_loss = True  # a pre-tokenized set has no prompt column for TRL to detect

    # Model (full, LoRA, or QLoRA), loaded by the trainer
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    trainer = GenstructSFTTrainer(  # TRL's SFTTrainer; on CPU a compact loss and per-document packed attention
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
        callbacks=[loss_plot_callback()],  # loss.png in every checkpoint
    )

    # Train
    metrics = trainer.train(resume_from_checkpoint=resume).metrics
    if data.eval is not None:
        metrics.update(trainer.evaluate())
    trainer.log_metrics("final", metrics)

    # Save: weights, tokenizer, generation config, card (and the merged model)
    recipe = argv[argv.index("--config") + 1] if "--config" in argv else None
    overrides = [a for a in argv if a not in ("--config", recipe)]
    recipe_text = (Path(recipe).read_text(encoding="utf-8") if recipe else "") + (
        f"# command-line overrides: {' '.join(overrides)}\n" if overrides else "")
    base_model = "random-init Mistral (base_model_config)" if args.base_model_config else model_args.model_name_or_path
    save_checkpoint(trainer, tokenizer, fmt=fmt.name, base_model=base_model, data=data,
                    metrics=metrics, recipe=recipe, recipe_text=recipe_text)
    if args.merge and trainer.accelerator.is_main_process:
        merge_adapter(output_dir, output_dir / "merged", dtype=model_args.dtype or "auto")
    logger.info(f"checkpoint saved to {output_dir}")
    trainer.end()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except GenstructError as e:
        print(f"sft.py: error: {e}", file=sys.stderr)
        sys.exit(2)
