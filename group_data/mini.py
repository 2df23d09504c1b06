# The mini's own services beside the stack, which the toolkit never touches: sshd, Open WebUI
# (which calls the proxy at 127.0.0.1:4000) and Ollama. The doctor lists them without calling
# them off.
llm_own_listeners = [22, 3000, 11434]
