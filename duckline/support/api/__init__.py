"""The support API: subscribers' tickets and the staff support desk."""
