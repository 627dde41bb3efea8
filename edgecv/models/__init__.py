"""Student zoo, teacher loading and input adaptation."""
