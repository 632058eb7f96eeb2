"""The device side: offline speech-to-text, a durable spooling producer, a subscriber for this
device's emotion events, a folder watcher and a many-device simulator."""
