"""Fine-tuning: tasks, methods, trainer."""
