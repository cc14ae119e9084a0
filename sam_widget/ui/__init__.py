"""The UI room: widgets, event translation, background work. Never computes a mask."""
