"""codeblue.comms"""
