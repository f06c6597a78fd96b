using RouteReplay.Server;

namespace RouteReplay.Tests.Server;

/// <summary>
/// The gate between generation requests and weight updates: an update waits for the requests inside, requests that
/// arrive meanwhile wait for the update, and cancelling either side leaves the gate usable.
/// </summary>
public sealed class WeightGateTests
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(10);

    /// <summary>Gives continuations a moment to run, so "still pending" means the gate is holding it.</summary>
    private static Task Settle() => Task.Delay(50);

    [Fact]
    public async Task An_update_waits_for_every_request_in_flight_and_requests_arriving_meanwhile_wait_for_the_update()
    {
        var gate = new WeightGate();
        var first = await gate.EnterAsync(CancellationToken.None);
        var second = await gate.EnterAsync(CancellationToken.None);
        Assert.Equal(2, gate.Active);

        var update = gate.BeginUpdateAsync(null, CancellationToken.None);
        var arriving = gate.EnterAsync(CancellationToken.None);
        await Settle();
        Assert.False(update.IsCompleted);
        Assert.False(arriving.IsCompleted);
        Assert.Equal(1, gate.Waiting);

        first.Dispose();
        first.Dispose();
        await Settle();
        Assert.False(update.IsCompleted, "one request is still inside");
        Assert.Equal(1, gate.Active);

        second.Dispose();
        var pass = await update.WaitAsync(Soon);
        Assert.Equal(0, gate.Active);
        await Settle();
        Assert.False(arriving.IsCompleted, "requests stay out until the update ends");

        pass.Dispose();
        using var late = await arriving.WaitAsync(Soon);
        Assert.Equal(1, gate.Active);
        Assert.Equal(0, gate.Waiting);
    }

    [Fact]
    public async Task The_drain_action_runs_with_the_gate_closed_and_may_end_the_requests_inside()
    {
        var gate = new WeightGate();
        var inside = await gate.EnterAsync(CancellationToken.None);
        Task<WeightGate.Pass>? arrivedWhileDraining = null;
        var update = gate.BeginUpdateAsync(
            () =>
            {
                arrivedWhileDraining = gate.EnterAsync(CancellationToken.None);
                inside.Dispose();
                return Task.CompletedTask;
            },
            CancellationToken.None);

        var pass = await update.WaitAsync(Soon);
        Assert.NotNull(arrivedWhileDraining);
        Assert.False(arrivedWhileDraining.IsCompleted);
        pass.Dispose();
        (await arrivedWhileDraining.WaitAsync(Soon)).Dispose();
        Assert.Equal(0, gate.Active);
    }

    [Fact]
    public async Task A_request_cancelled_while_waiting_for_an_update_leaves_without_entering()
    {
        var gate = new WeightGate();
        using var update = await gate.BeginUpdateAsync(null, CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var waiting = gate.EnterAsync(cancel.Token);
        Assert.Equal(1, gate.Waiting);

        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(Soon));
        Assert.Equal(0, gate.Waiting);
        Assert.Equal(0, gate.Active);
    }

    [Fact]
    public async Task An_update_cancelled_while_draining_reopens_the_gate_and_a_later_update_still_works()
    {
        var gate = new WeightGate();
        var inside = await gate.EnterAsync(CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var update = gate.BeginUpdateAsync(null, cancel.Token);
        var arriving = gate.EnterAsync(CancellationToken.None);
        await Settle();
        Assert.False(arriving.IsCompleted);

        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => update.WaitAsync(Soon));
        var entered = await arriving.WaitAsync(Soon);
        Assert.Equal(2, gate.Active);

        var next = gate.BeginUpdateAsync(null, CancellationToken.None);
        inside.Dispose();
        entered.Dispose();
        (await next.WaitAsync(Soon)).Dispose();
        (await gate.EnterAsync(CancellationToken.None).WaitAsync(Soon)).Dispose();
    }

    [Fact]
    public async Task Updates_run_one_at_a_time()
    {
        var gate = new WeightGate();
        var first = await gate.BeginUpdateAsync(null, CancellationToken.None);
        var second = gate.BeginUpdateAsync(null, CancellationToken.None);
        await Settle();
        Assert.False(second.IsCompleted);

        // A request waiting on the first update enters when it ends, either before the second closes the gate (which
        // then waits for it to leave) or after the second ends; never while an update runs.
        var arriving = gate.EnterAsync(CancellationToken.None);
        first.Dispose();
        var winner = await Task.WhenAny(arriving, second).WaitAsync(Soon);
        await Settle();
        if (winner == arriving)
        {
            Assert.False(second.IsCompleted, "the second update must wait for the request that got in");
            (await arriving).Dispose();
            (await second.WaitAsync(Soon)).Dispose();
        }
        else
        {
            Assert.False(arriving.IsCompleted, "the request must wait for the second update");
            (await second).Dispose();
            (await arriving.WaitAsync(Soon)).Dispose();
        }
        Assert.Equal(0, gate.Active);
    }
}
