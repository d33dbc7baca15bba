"""hoard.store"""
