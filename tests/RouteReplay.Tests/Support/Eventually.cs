using RouteReplay.Engine;

namespace RouteReplay.Tests.Support;

/// <summary>Waiting for a state the test expects to come: by stepping an engine, or by polling.</summary>
public static class Eventually
{
    /// <summary>Steps <paramref name="engine"/> until <paramref name="condition"/> holds; fails if the engine runs out of work or 2,000 steps pass.</summary>
    public static void StepUntil(LlmEngine engine, Func<bool> condition)
    {
        for (var step = 0; step < 2000; step++)
        {
            if (condition())
            {
                return;
            }
            Assert.True(engine.Step(), "the engine ran out of work before the wanted state");
        }
        Assert.Fail("the wanted state never came");
    }

    /// <summary>Polls <paramref name="condition"/> every 10 ms for up to 15 s; fails naming <paramref name="what"/>.</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        for (var attempt = 0; attempt < 1500; attempt++)
        {
            if (await condition())
            {
                return;
            }
            await Task.Delay(10);
        }
        Assert.Fail($"timed out waiting until {what}");
    }
}
