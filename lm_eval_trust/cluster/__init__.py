"""The sweep as a plan of units (compress a setting; evaluate a shard of a task's documents), run by
an executor (in order here, Ray tasks, or Slurm job arrays through submitit) and merged per setting
only when every unit's done marker matches the unit the plan would run now."""
