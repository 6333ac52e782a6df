"""The Gradio page: ``wiring`` connects Blocks to the managers, ``views`` renders their snapshots."""
