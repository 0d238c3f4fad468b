"""Episodes are dynamic partitions; keys are `<series>-<episode>` slugs added by the sensor."""

import dagster as dg

episodes = dg.DynamicPartitionsDefinition(name="episodes")
